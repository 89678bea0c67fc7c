"""Building uploaded models without ever unpickling anything.

`torch.export.load` unpickles payloads an archive marks as pickled and falls back to
`torch.load(weights_only=False)` for sample inputs, so an upload is loaded only after its
payload configs are checked, and inside a guard that turns any unpickling into an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from worker.context import JobFailed


class PickleRefused(Exception):
    pass


@contextlib.contextmanager
def no_unpickling():
    """Within: `torch.load` only with weights_only=True, and no `pickle.loads`."""
    real_torch_load = torch.load
    real_pickle_loads = pickle.loads

    def safe_torch_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_torch_load(*args, **kwargs)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise PickleRefused("the archive holds a pickled object")

    torch.load = safe_torch_load
    pickle.loads = refuse
    try:
        yield
    finally:
        torch.load = real_torch_load
        pickle.loads = real_pickle_loads


def _check_payload_configs(data: bytes) -> None:
    archive = zipfile.ZipFile(io.BytesIO(data))
    for name in archive.namelist():
        if name.endswith("_config.json") and ("/data/weights/" in name or "/data/constants/" in name):
            config = json.loads(archive.read(name))
            for entry, meta in (config.get("config") or {}).items():
                if isinstance(meta, dict) and meta.get("use_pickle"):
                    raise JobFailed(
                        "model-invalid",
                        "The archive holds pickled tensors or objects",
                        f"{entry!r} in {name}; Glassbox never unpickles uploads. Export plain tensors.",
                    )


def load_exported_program(data: bytes) -> nn.Module:
    _check_payload_configs(data)
    try:
        with no_unpickling():
            program = torch.export.load(io.BytesIO(data))
    except PickleRefused as exc:
        raise JobFailed("model-invalid", "The archive holds pickled objects", str(exc)) from exc
    except Exception as exc:
        raise JobFailed("model-invalid", "Not a loadable torch.export archive", f"{type(exc).__name__}: {exc}") from exc
    try:
        # unflatten keeps the original module hierarchy, so layers keep the names users know.
        module = torch.export.unflatten(program)
    except Exception:
        return program.module()
    original_types: dict[str, str] = {}
    for node in program.graph.nodes:
        for fqn, type_ in (node.meta.get("nn_module_stack") or {}).values():
            name = type_ if isinstance(type_, str) else getattr(type_, "__qualname__", str(type_))
            original_types.setdefault(fqn, name.rsplit(".", 1)[-1])
    for fqn, submodule in module.named_modules():
        if fqn in original_types:
            # Read by the probe: layers report the type the model was written with.
            submodule.glassbox_layer_type = original_types[fqn]
    return module


def load_state_dict_into(module: nn.Module, data: bytes) -> nn.Module:
    try:
        state = load_safetensors(data)
    except Exception as exc:
        raise JobFailed("model-invalid", "Not a readable safetensors file", str(exc)) from exc
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
        if mismatched:
            parts.append(
                "shape mismatch: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched[:5])
            )
        raise JobFailed("model-invalid", "The weights do not fit the architecture", "; ".join(parts))
    module.load_state_dict(state, strict=True)
    return module
