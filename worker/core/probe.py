"""Layer addressing: which layers a model has, in execution order, with their output shapes.

A layer is addressed by the dotted module name users know (`features.10`, `layer3.1.relu`).
Two refinements make every activation addressable:
- a module called several times in one forward (resnet's `relu` in a block) is one name per
  call: `layer1.0.relu` for the first, `layer1.0.relu@1` for the second, ...;
- activations written as functions inside `forward` (`F.relu(x)`, `torch.relu(x)`) are named
  after the module whose forward called them: `layer1.0:relu`, `layer1.0:relu@1`, ... (the
  root module's are `:relu`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from worker.core.batching import accepted_batch_sizes, in_accepted_batches

FUNCTIONAL_ACTIVATIONS: dict[Callable, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.hardswish: "hardswish",
    torch.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    # Exported programs (torch.export) call the aten operators directly.
    torch.ops.aten.relu.default: "relu",
    torch.ops.aten.relu_.default: "relu",
    torch.ops.aten.gelu.default: "gelu",
    torch.ops.aten.silu.default: "silu",
    torch.ops.aten.sigmoid.default: "sigmoid",
    torch.ops.aten.tanh.default: "tanh",
    torch.ops.aten.hardswish.default: "hardswish",
    torch.ops.aten.leaky_relu.default: "leaky_relu",
}


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: list[int]  # without the batch dimension
    units: int  # channels (dim 1) of a feature map, or features of a vector

    def to_dict(self) -> dict:
        return asdict(self)


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class _FunctionalRecorder(TorchFunctionMode):
    def __init__(self, on_call: Callable[[str, torch.Tensor], None]):
        super().__init__()
        self.on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = FUNCTIONAL_ACTIVATIONS.get(func)
        if name is not None and isinstance(result, torch.Tensor):
            self.on_call(name, result)
        return result


@torch.no_grad()
def inspect_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Run one forward pass on `example` (batch of 1) and list every module call and
    functional activation, in the order their outputs were produced."""
    names = {module: name for name, module in model.named_modules()}
    modules = {name: module for module, name in names.items()}
    calls: Counter[str] = Counter()
    stack: list[str] = []
    layers: list[LayerInfo] = []

    def address(base: str) -> str:
        index = calls[base]
        calls[base] += 1
        return base if index == 0 else f"{base}@{index}"

    def record(name: str, type_name: str, output: torch.Tensor) -> None:
        shape = list(output.shape[1:])
        layers.append(LayerInfo(name, type_name, shape, shape[0] if shape else 1))

    def pre_hook(module, _inputs):
        stack.append(names[module])

    def post_hook(module, _inputs, output):
        stack.pop()
        tensor = _first_tensor(output)
        if module is not model and tensor is not None:
            type_name = getattr(module, "glassbox_layer_type", None) or type(module).__name__
            record(address(names[module]), type_name, tensor)

    def on_functional(fn_name: str, output: torch.Tensor) -> None:
        parent = stack[-1] if stack else ""
        # Module activations (nn.ReLU) also go through F.relu: only count the bare calls.
        if parent and type(modules[parent]).__name__.lower().startswith(fn_name.replace("_", "")):
            return
        record(address(f"{parent}:{fn_name}"), f"functional.{fn_name}", output)

    def forward(piece: torch.Tensor) -> torch.Tensor:
        model(piece)
        return piece  # the hooks record what is needed, whatever the model returns

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        with _FunctionalRecorder(on_functional):
            # One input, so one forward pass (padded where the model takes larger batches only).
            in_accepted_batches(model, example[:1], forward)
    finally:
        for handle in handles:
            handle.remove()
    return layers


class _Reached(Exception):
    """Raised inside the forward pass once the wanted layer has produced its output."""


def parse_layer_name(layer: str) -> tuple[str, str | None, int]:
    """`features.3` -> ("features.3", None, 0); `layer1.0.relu@1` -> (..., None, 1);
    `layer1.0:relu@2` -> ("layer1.0", "relu", 2) for a functional activation."""
    base, _, index = layer.partition("@")
    call = int(index) if index else 0
    if ":" in base:
        parent, _, function = base.partition(":")
        return parent, function, call
    return base, None, call


def capture_activation(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of `layer` (a name as listed by `inspect_layers`) for input `x`.

    The forward pass stops as soon as that output exists: layers after it are never computed.
    Gradients flow from the returned tensor back to `x` as usual. No hook outlives the call.
    A model that takes only some batch sizes (worker.core.batching) gets `x` in pieces, each
    captured by a forward pass of its own (the hooks count calls, and stop, per forward).
    """
    return in_accepted_batches(model, x, lambda piece: _capture_once(model, piece, layer))


def _capture_once(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    return _capture_many_once(model, x, [layer])[layer]


def capture_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The outputs of several `layers` for input `x`, from ONE forward pass that stops once the
    last of them (in execution order) exists: one forward to the deepest, capturing all.

    Every output but the last is cloned when it is captured: the layers after it may still
    modify it in place (resnet's `ReLU(inplace=True)` rewrites a batch norm's output), and a
    scan of several layers must see what a scan of each alone would. No hook outlives the
    call. A model that takes only some batch sizes gets `x` in pieces (as `capture_activation`
    does): each piece's outputs are packed side by side into one [rows, features] tensor so
    that `in_accepted_batches` drops the padded rows, then unpacked.
    """
    names = list(dict.fromkeys(layers))
    sizes = accepted_batch_sizes(model)
    count = int(x.shape[0])
    if sizes is None or sizes.accepts(count) or count == 0:
        return _capture_many_once(model, x, names)
    shapes: dict[str, torch.Size] = {}
    dtypes: dict[str, torch.dtype] = {}

    def packed(piece: torch.Tensor) -> torch.Tensor:
        outputs = _capture_many_once(model, piece, names)
        for name, output in outputs.items():
            shapes[name], dtypes[name] = output.shape[1:], output.dtype
        common = functools.reduce(torch.promote_types, dtypes.values())
        return torch.cat([outputs[name].flatten(1).to(common) for name in names], dim=1)

    flat = in_accepted_batches(model, x, packed)
    widths = [math.prod(shapes[name]) for name in names]
    pieces = torch.split(flat, widths, dim=1)
    return {
        name: piece.reshape(count, *shapes[name]).to(dtypes[name]) for name, piece in zip(names, pieces, strict=True)
    }


def _capture_many_once(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    by_module: dict[str, dict[int, str]] = {}  # module name -> call index -> layer
    by_function: dict[tuple[str, str], dict[int, str]] = {}  # (parent, function) -> call index -> layer
    for layer in layers:
        module_name, function, call = parse_layer_name(layer)
        if module_name and module_name not in modules:
            raise KeyError(f"no module {module_name!r} in the model")
        if function is None:
            by_module.setdefault(module_name, {})[call] = layer
        else:
            by_function.setdefault((module_name, function), {})[call] = layer
    captured: dict[str, torch.Tensor] = {}
    calls: Counter[object] = Counter()

    def keep(key: object, wanted: dict[int, str], output: torch.Tensor | None) -> None:
        call = calls[key]
        calls[key] += 1
        layer = wanted.get(call)
        if layer is None or output is None:
            return
        if len(captured) + 1 == len(layers):
            captured[layer] = output
            raise _Reached()
        captured[layer] = output.clone()

    handles = []
    for module_name, wanted in by_module.items():
        target = modules[module_name] if module_name else model

        def post_hook(_module, _inputs, output, key=module_name, wanted=wanted):
            keep(key, wanted, _first_tensor(output))

        handles.append(target.register_forward_hook(post_hook))
    mode = None
    if by_function:
        names = {m: n for n, m in modules.items()}
        stack: list[str] = []

        def enter(module, _inputs) -> None:
            stack.append(names[module])

        def leave(_module, _inputs, _output) -> None:  # returning None keeps the output
            stack.pop()

        handles += [m.register_forward_pre_hook(enter) for m in names]
        handles += [m.register_forward_hook(leave) for m in names]

        def on_call(fn_name: str, output: torch.Tensor) -> None:
            parent = stack[-1] if stack else ""
            wanted = by_function.get((parent, fn_name))
            if wanted is None:
                return
            # Module activations (nn.ReLU) also go through F.relu: only count the bare calls.
            if parent and type(modules[parent]).__name__.lower().startswith(fn_name.replace("_", "")):
                return
            keep((parent, fn_name), wanted, output)

        mode = _FunctionalRecorder(on_call)
    try:
        with mode if mode is not None else contextlib.nullcontext():
            model(x)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer for layer in layers if layer not in captured]
    if missing:
        raise KeyError(f"layer {missing[0]!r} produced no output in a forward pass")
    return captured
