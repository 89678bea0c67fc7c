"""Layer addressing: which layers a model has, in execution order, with their output shapes.

A layer is addressed by the dotted module name users know (`features.10`, `layer3.1.relu`).
Two refinements make every activation addressable:
- a module called several times in one forward (resnet's `relu` in a block) is one name per
  call: `layer1.0.relu` for the first, `layer1.0.relu@1` for the second, ...;
- activations written as functions inside `forward` (`F.relu(x)`, `torch.relu(x)`) are named
  after the module whose forward called them: `layer1.0:relu`, `layer1.0:relu@1`, ... (the
  root module's are `:relu`).

Units are features, whatever the layout. Convolutions write [N, C, H, W] (channels first), but
a transformer writes [N, T, F] (tokens, then features) and a ConvNeXt block [N, H, W, C]
between its `Permute`s. Every layer therefore has a layout (`layer_layouts` says which rule
gives it), and `capture_activation(s)` hand every layer over channels first: [N, F, T] and
[N, C, H, W]. So objectives, indexes, deconvnet positions and atlases see units = features
and positions = tokens or pixels, for every architecture, without knowing about layouts. The
loader records the layouts on the loaded model (`set_layer_layouts`), as it records the batch
sizes the model takes: every caller of the capture functions gets the canonical view, and none
can forget to ask for it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

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


Layout = Literal["channels_first", "tokens", "channels_last"]
LAYOUTS_ATTRIBUTE = "glassbox_layer_layouts"  # set on a model's root module by the loader

# Module types that act on the last dimension: their outputs are [..., features]. Exact names:
# a subclass such as torchvision's channels-first `LayerNorm2d` is not one of them.
FEATURES_LAST_TYPES = {"Linear", "NonDynamicallyQuantizableLinear", "LayerNorm", "MultiheadAttention"}

# Nonlinearities that can sit between the two Linear layers of an MLP block.
NONLINEARITY_TYPES = {"GELU", "SiLU", "ReLU", "ReLU6", "Mish", "Tanh", "Sigmoid", "Hardswish", "LeakyReLU", "ELU",
                      "QuickGELU", "GELUActivation", "NewGELUActivation"}  # fmt: skip
MLP_HIDDEN_NOTE = (
    "MLP hidden layer: the nonlinearity between the two Linear layers of an MLP block, at every "
    "{where}. The informative layer for activation maximization in transformers and other GELU "
    "networks (the layers of the residual stream around it mostly carry their input forward)."
)
MAX_PREFIX_TOKENS = 1  # a class token; a token count that is not 0 or 1 plus a grid gets no grid


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: list[int]  # without the batch dimension, channels first: the shape jobs address
    units: int  # channels (dim 1) of a feature map, features of a vector or of a token
    layout: Layout = "channels_first"  # how the module itself lays its output out
    raw_shape: list[int] | None = None  # the module's own output shape, where the layout is features last
    token_grid: list[int] | None = None  # tokens layers: [rows, columns] of image patches
    prefix_tokens: int | None = None  # tokens layers with a grid: tokens before the patches (a class token)
    note: str | None = None  # what the layer is good for, where that is worth saying

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def _features_last_module(module: nn.Module, type_name: str) -> bool:
    if type_name not in FEATURES_LAST_TYPES:
        return False
    # A MultiheadAttention that is not batch first returns [T, N, F]: not a [N, ..., F] layer.
    return type_name != "MultiheadAttention" or bool(getattr(module, "batch_first", True))


def token_grid(tokens: int, height: int, width: int) -> tuple[int, list[int]] | None:
    """(prefix tokens, [rows, columns]) when `tokens` is a class token or none followed by a grid
    of patches with the image's proportions (vit_b_16 on 224x224: 1 + 14x14 = 197); else None."""
    if height <= 0 or width <= 0:
        return None
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        patches = tokens - prefix
        # rows x columns = patches with rows / columns = height / width: rows^2 = patches * height / width.
        rows = math.isqrt(patches * height // width) if patches > 0 else 0
        if rows > 0 and patches % rows == 0 and rows * width == (patches // rows) * height:
            return prefix, [rows, patches // rows]
    return None


def token_box(token: int, tokens: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The box [y0, x0, y1, x1) of the image patch token `token` of a `tokens`-token layer stands
    for (a prefix token such as the class token: the whole image); None without a grid."""
    found = token_grid(tokens, height, width)
    if found is None:
        return None
    prefix, (rows, columns) = found
    if token < prefix:
        return (0, 0, height, width)
    row, column = divmod(token - prefix, columns)
    return (
        row * height // rows,
        column * width // columns,
        (row + 1) * height // rows,
        (column + 1) * width // columns,
    )


def channels_first_shape(shape: Sequence[int], layout: str) -> list[int]:
    """A module's output shape (no batch dimension) as jobs address it: features first."""
    shape = list(shape)
    return shape if layout == "channels_first" else [shape[-1], *shape[:-1]]


def to_channels_first(output: torch.Tensor, layout: str | None) -> torch.Tensor:
    """[N, ..., F] -> [N, F, ...] for a features-last layout (a copy, contiguous, that gradients
    flow through); the tensor itself for a channels-first one."""
    if layout is None or layout == "channels_first" or output.dim() < 3:
        return output
    return output.movedim(-1, 1).contiguous()


def layer_layouts(layers: Sequence[tuple[str, str, Sequence[int], bool]]) -> dict[str, Layout]:
    """Each layer's layout, from (name, type, raw output shape without the batch dimension,
    whether its module acts on the last dimension), in execution order.

    The rule: a layer with fewer than two non-batch dimensions is `channels_first` (a vector:
    its units are its features, nothing to decide). Modules of the FEATURES_LAST_TYPES
    (exactly `Linear`, `LayerNorm`, `MultiheadAttention` when batch first) write features last.
    Any other layer (GELU, Dropout, a Permute, a residual block, a functional activation) is
    features last when some features-last module of the model writes the identical shape:
    elementwise layers and containers inherit the layout of what they pass on, while a
    ConvNeXt `Permute` back to [C, H, W], or any convolution, matches none. Features last with
    two dimensions is `tokens` ([T, F]: units F at T token positions), with more
    `channels_last` ([H, W, C]). A channels-first layer whose shape happens to equal a
    features-last one (C = H = W ...) would be misread; no torchvision model has one."""
    last_shapes = {tuple(shape) for _, _, shape, features_last in layers if features_last and len(shape) >= 2}
    layouts: dict[str, Layout] = {}
    for name, _, shape, features_last in layers:
        if len(shape) < 2 or not (features_last or tuple(shape) in last_shapes):
            layouts[name] = "channels_first"
        else:
            layouts[name] = "tokens" if len(shape) == 2 else "channels_last"
    return layouts


def _mlp_hidden(layers: list[LayerInfo]) -> set[str]:
    """The nonlinearities that sit between two Linear layers at every token or position: the
    previous layer is a features-last Linear and the next one, Dropouts aside, a Linear too."""
    found = set()
    for index, layer in enumerate(layers):
        nonlinear = layer.type in NONLINEARITY_TYPES or layer.type.startswith("functional.")
        if not nonlinear or layer.layout == "channels_first" or index == 0 or layers[index - 1].type != "Linear":
            continue
        following = next((entry for entry in layers[index + 1 :] if entry.type != "Dropout"), None)
        if following is not None and following.type == "Linear":
            found.add(layer.name)
    return found


def set_layer_layouts(model: nn.Module, layouts: Mapping[str, str] | None) -> None:
    """Record on `model` the layouts the capture functions turn channels first (the loader does
    it at load time, from the model's record); only features-last layers need an entry."""
    kept = {name: layout for name, layout in (layouts or {}).items() if layout != "channels_first"}
    setattr(model, LAYOUTS_ATTRIBUTE, kept)


def layer_layout(model: nn.Module, layer: str) -> Layout:
    """The layout recorded on `model` for `layer` (`channels_first` where none is)."""
    return (getattr(model, LAYOUTS_ATTRIBUTE, None) or {}).get(layer, "channels_first")


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
    functional activation, in the order their outputs were produced, each with its layout
    (`layer_layouts`) and its shape channels first. A `tokens` layer over an image whose
    token count is a class token or none plus a grid of patches (`token_grid`) has the grid;
    the nonlinearities of MLP blocks (`_mlp_hidden`) have a note saying they are the layers to
    visualize."""
    names = {module: name for name, module in model.named_modules()}
    modules = {name: module for module, name in names.items()}
    calls: Counter[str] = Counter()
    stack: list[str] = []
    raw: list[tuple[str, str, list[int], bool]] = []  # name, type, shape, features last by its type

    def address(base: str) -> str:
        index = calls[base]
        calls[base] += 1
        return base if index == 0 else f"{base}@{index}"

    def record(name: str, type_name: str, output: torch.Tensor, features_last: bool = False) -> None:
        raw.append((name, type_name, list(output.shape[1:]), features_last))

    def pre_hook(module, _inputs):
        stack.append(names[module])

    def post_hook(module, _inputs, output):
        stack.pop()
        tensor = _first_tensor(output)
        if module is not model and tensor is not None:
            type_name = getattr(module, "glassbox_layer_type", None) or type(module).__name__
            record(address(names[module]), type_name, tensor, _features_last_module(module, type_name))

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
    return _described(raw, example)


def _described(raw: list[tuple[str, str, list[int], bool]], example: torch.Tensor) -> list[LayerInfo]:
    layouts = layer_layouts(raw)
    height, width = (int(example.shape[-2]), int(example.shape[-1])) if example.dim() == 4 else (0, 0)
    layers = []
    for name, type_name, shape, _ in raw:
        layout = layouts[name]
        addressed = channels_first_shape(shape, layout)
        grid = token_grid(shape[0], height, width) if layout == "tokens" and height else None
        layers.append(
            LayerInfo(
                name, type_name, addressed, addressed[0] if addressed else 1, layout,
                raw_shape=shape if layout != "channels_first" else None,
                token_grid=grid[1] if grid else None,
                prefix_tokens=grid[0] if grid else None,
            )
        )  # fmt: skip
    hidden = _mlp_hidden(layers)
    return [
        replace(layer, note=MLP_HIDDEN_NOTE.format(where="token" if layer.layout == "tokens" else "position"))
        if layer.name in hidden
        else layer
        for layer in layers
    ]


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
    """The output of `layer` (a name as listed by `inspect_layers`) for input `x`, channels
    first ([N, F, T] for a `tokens` layer, [N, C, H, W] for a `channels_last` one: the layouts
    recorded on `model` by `set_layer_layouts`).

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
    layouts = getattr(model, LAYOUTS_ATTRIBUTE, None) or {}

    def keep(key: object, wanted: dict[int, str], output: torch.Tensor | None) -> None:
        call = calls[key]
        calls[key] += 1
        layer = wanted.get(call)
        if layer is None or output is None:
            return
        canonical = to_channels_first(output, layouts.get(layer))  # a copy where the layout changes
        if canonical is output and len(captured) + 1 < len(layers):
            canonical = output.clone()
        captured[layer] = canonical
        if len(captured) == len(layers):
            raise _Reached()

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
