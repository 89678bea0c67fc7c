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
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file as load_safetensors_file
from torch import nn
from torch.export.graph_signature import InputKind

from worker.context import JobFailed
from worker.core.batching import BatchSizes, set_accepted_batch_sizes


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


# An uploaded file as the worker has it: a local path (a `file` blob store: read in place,
# safetensors memory-mapped) or its bytes (read from S3; weights are loaded in memory anyway).
ModelFile = Path | bytes


def _opened(source: ModelFile) -> Any:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _check_payload_configs(data: ModelFile) -> None:
    archive = zipfile.ZipFile(_opened(data))
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


def load_exported_program(data: ModelFile) -> nn.Module:
    _check_payload_configs(data)
    try:
        with no_unpickling():
            program = torch.export.load(_opened(data))
    except PickleRefused as exc:
        raise JobFailed("model-invalid", "The archive holds pickled objects", str(exc)) from exc
    except Exception as exc:
        raise JobFailed("model-invalid", "Not a loadable torch.export archive", f"{type(exc).__name__}: {exc}") from exc
    try:
        # unflatten keeps the original module hierarchy, so layers keep the names users know.
        module = torch.export.unflatten(program)
    except Exception:
        module = program.module()
        set_accepted_batch_sizes(module, declared_batch_sizes(program))
        return module
    set_accepted_batch_sizes(module, declared_batch_sizes(program))
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


def declared_batch_sizes(program: torch.export.ExportedProgram) -> BatchSizes | None:
    """The batch sizes (dim 0 of the first input) the archive declares: its example's size
    when the dimension is static (the default of `torch.export.export`), the range of its
    symbol when it was exported with a `Dim`; None when the archive does not say (no tensor
    input, or a batch that is an expression such as `2*batch`)."""
    user_inputs = [
        spec.arg.name
        for spec in program.graph_signature.input_specs
        if spec.kind == InputKind.USER_INPUT and hasattr(spec.arg, "name")
    ]
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    value = placeholders[user_inputs[0]].meta.get("val") if user_inputs and user_inputs[0] in placeholders else None
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return None
    batch = value.shape[0]
    if isinstance(batch, int):
        return BatchSizes(max(batch, 1), max(batch, 1))
    import sympy

    expression = batch.node.expr
    bounds = program.range_constraints.get(expression)
    if bounds is None or not isinstance(expression, sympy.Symbol):
        return None
    # torch's unbounded `int_oo` claims to be finite: only a sympy Integer is a bound.
    high = int(bounds.upper) if isinstance(bounds.upper, sympy.Integer) else None
    return BatchSizes(max(int(bounds.lower), 1), max(high, 1) if high is not None else None)


def safetensors_shapes(data: ModelFile) -> dict[str, tuple]:
    """Each tensor's shape, from the header only."""
    try:
        if isinstance(data, bytes):
            return {k: tuple(v.shape) for k, v in load_safetensors(data).items()}
        with safe_open(str(data), framework="pt") as weights:
            return {k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()}  # noqa: SIM118
    except Exception as exc:
        raise JobFailed("model-invalid", "Not a readable safetensors file", str(exc)) from exc


def load_state_dict_into(module: nn.Module, data: ModelFile) -> nn.Module:
    try:
        state = load_safetensors(data) if isinstance(data, bytes) else load_safetensors_file(str(data))
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
