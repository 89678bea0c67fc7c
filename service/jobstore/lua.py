"""Lua scripts called by name instead of by position.

A script declares the names of its keys and arguments; the Lua body refers to those names
(a prelude binds `local job_key = KEYS[1]` and so on), and Python calls it with keyword
arguments. Adding an argument can no longer shift every other one silently. A trailing list
of variable length (artifact keys, record fields) is declared as `rest_keys` / `rest_args`
and arrives in Lua as a table of that name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis


class LuaScript:
    def __init__(
        self,
        name: str,
        *,
        keys: Sequence[str],
        args: Sequence[str] = (),
        body: str,
        rest_keys: str | None = None,
        rest_args: str | None = None,
    ):
        self.name = name
        self.keys = tuple(keys)
        self.args = tuple(args)
        self.rest_keys = rest_keys
        self.rest_args = rest_args
        prelude = [f"local {key} = KEYS[{i + 1}]" for i, key in enumerate(self.keys)]
        prelude += [f"local {arg} = ARGV[{i + 1}]" for i, arg in enumerate(self.args)]
        if rest_keys:
            prelude.append(_rest_list(rest_keys, "KEYS", len(self.keys) + 1))
        if rest_args:
            prelude.append(_rest_list(rest_args, "ARGV", len(self.args) + 1))
        self.source = "\n".join(prelude) + "\n" + body

    def bind(self, connection: redis.Redis) -> BoundScript:
        return BoundScript(self, connection.register_script(self.source))


class BoundScript:
    def __init__(self, script: LuaScript, registered: Any):
        self.script = script
        self._registered = registered

    def __call__(self, *, client: Any = None, **named: Any) -> Any:
        """Run it; `named` holds every declared key and argument (and the rest lists).
        `client` may be a pipeline, to send the script with other commands in one round trip."""
        keys, args = self._keys_and_args(named)
        return self._registered(keys=keys, args=args, client=client)

    def queue(self, pipeline: Any, **named: Any) -> None:
        """Add a call to `pipeline` as a bare EVALSHA: unlike `client=pipeline`, the pipeline does
        not first ask Redis whether the script is loaded (one more round trip per execute). A
        reply of NoScriptError (Redis restarted) is the caller's to retry with a plain call."""
        keys, args = self._keys_and_args(named)
        pipeline.execute_command("EVALSHA", self._registered.sha, len(keys), *keys, *args)

    def _keys_and_args(self, named: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        script = self.script
        expected = {*script.keys, *script.args, *filter(None, (script.rest_keys, script.rest_args))}
        unknown = set(named) - expected
        missing = expected - set(named) - {script.rest_keys, script.rest_args}
        if unknown or missing:
            raise TypeError(f"script {script.name}: unknown {sorted(unknown)}, missing {sorted(missing)}")
        keys = [named[k] for k in script.keys] + list(named.get(script.rest_keys, ()) if script.rest_keys else ())
        args = [_arg(named[a]) for a in script.args]
        if script.rest_args:
            args += [_arg(v) for v in named.get(script.rest_args, ())]
        return keys, args


def _rest_list(name: str, source: str, first: int) -> str:
    # unpack copies in C (a Lua loop costs a create's script a third of its time), within the
    # Lua stack's limit; longer lists (a legacy job's artifact keys) are copied in a loop.
    return (
        f"local {name}\n"
        f"if #{source} - {first} < 7000 then {name} = {{unpack({source}, {first})}}\n"
        f"else {name} = {{}} for i = {first}, #{source} do table.insert({name}, {source}[i]) end end"
    )


def _arg(value: Any) -> Any:
    # Lua sees strings: booleans travel as '1'/'0', None as ''.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value
