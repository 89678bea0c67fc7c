"""How every process connects to Redis: fail fast while it is down, reconnect by itself after."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis.asyncio
import redis.asyncio.connection

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis is a dependency; a build without it packs in Python, as redis-py does
    _hiredis_pack = None

# A client gets a 503 at once while Redis is down, and the connection comes back by itself.
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
# No Redis URL is configured in `glassbox openapi` and in import-only checks.
UNCONFIGURED_REDIS_URL = "redis://127.0.0.1:1/0"


def redis_options() -> dict[str, Any]:
    return {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
    }


def async_redis_from_url(url: str, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client whose connections pack commands in C, as redis-py's sync ones do.

    redis-py's asyncio connection packs every command in Python, about half a microsecond per
    argument: a create's one script call has ~80 (the job record and RQ's job hash), and packing
    it cost the API more than a tenth of a create's CPU. Commands made only of str, bytes and
    int go to hiredis.pack_command, which writes the same bytes; anything else (a float, whose
    text redis-py and hiredis write differently) takes redis-py's own path."""
    client = redis.asyncio.Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = _packing_in_c(pool.connection_class)
    return client


_PACKED_IN_C = (str, bytes, int)


class _PackInC:
    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is None or self.encoder.encoding != "utf-8" or self.encoder.encoding_errors != "strict":
            return super().pack_command(*args)  # type: ignore[misc]
        packed = []
        for arg in args:
            if type(arg) in _PACKED_IN_C:  # bool is an int subclass: redis-py refuses it, as it should
                packed.append(arg)
            elif isinstance(arg, str):  # a str enum (RQ's job status): its value, as redis-py encodes it
                packed.append(str.encode(arg))
            else:
                return super().pack_command(*args)  # type: ignore[misc]
        first = packed[0]
        # A command name may carry literal words ('CONFIG GET'): sent as separate arguments.
        if isinstance(first, str):
            packed[:1] = first.encode().split()
        elif b" " in first:
            packed[:1] = first.split()
        return [_hiredis_pack(tuple(packed))]


@cache
def _packing_in_c(connection_class: type) -> type:
    if issubclass(connection_class, _PackInC):
        return connection_class
    return type(f"{connection_class.__name__}PackedInC", (_PackInC, connection_class), {})
