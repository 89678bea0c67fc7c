"""Checks of layer names and unit indices against a model's recorded layers (no torch).

Job kinds call these from their `check` so that a bad `layer` or unit is a 422 at submit time
that lists the valid choices. A model whose layers are not recorded yet (a torchvision
architecture no job has loaded) cannot be checked here; its job checks on the worker.
"""

from __future__ import annotations

from typing import Any

from service.validation import invalid

MAX_CHOICES_LISTED = 60


def _listing(names: list[str]) -> str:
    if len(names) <= MAX_CHOICES_LISTED:
        return ", ".join(names)
    return ", ".join(names[:MAX_CHOICES_LISTED]) + f", ... ({len(names)} in all; GET /v1/models/{{id}} lists them)"


def find_layer(record: dict[str, Any], layer: str, loc: list[str | int]) -> dict[str, Any] | None:
    """The layer's record, a 422 naming the valid layers if there is none, or None when the
    model's layers are not known yet."""
    layers = record.get("layers")
    if not layers:
        return None
    for entry in layers:
        if entry["name"] == layer:
            return entry
    raise invalid(loc, f"unknown layer {layer!r} of model {record['id']!r}; valid layers: {_listing([entry['name'] for entry in layers])}", "unknown-layer")


def check_units(layer: dict[str, Any], units: list[int], loc: list[str | int]) -> None:
    count = int(layer["units"])
    for index, unit in enumerate(units):
        if not 0 <= unit < count:
            raise invalid(
                [*loc, index],
                f"unit {unit} is out of range for layer {layer['name']!r}: valid units are 0 to {count - 1}",
                "unit-out-of-range",
            )


def check_position(layer: dict[str, Any], position: list[int], loc: list[str | int]) -> None:
    """A position in the layer's output as listed (channels first): [y, x] in a [C, H, W] map,
    [token] in a `tokens` layer's [F, T] (one coordinate per dimension after the units)."""
    shape = layer["output_shape"]
    if len(shape) < 2:
        raise invalid(loc, f"layer {layer['name']!r} has no spatial positions (output shape {shape})", "no-positions")
    if layer.get("layout") == "tokens":
        tokens = shape[1]
        grid, prefix = layer.get("token_grid"), layer.get("prefix_tokens") or 0
        where = ""
        if grid:
            patches = f"the {grid[0]}x{grid[1]} image patches, row by row"
            where = (
                f"; token 0 is the class token, tokens {prefix} to {tokens - 1} {patches}" if prefix else f"; {patches}"
            )
        if len(position) != 1:
            raise invalid(
                loc,
                f"layer {layer['name']!r} is a tokens layer ({shape[0]} features at {tokens} tokens): a position is "
                f"[token], 0 to {tokens - 1}{where}",
                "position-shape",
            )
        if not 0 <= position[0] < tokens:
            raise invalid(loc, f"token {position[0]} is outside the {tokens} tokens of layer {layer['name']!r}{where}",
                          "position-out-of-range")  # fmt: skip
        return
    sizes = shape[1:]
    if len(position) != len(sizes):
        wanted = {1: "[index]", 2: "[y, x]"}.get(len(sizes), f"{len(sizes)} coordinates")
        raise invalid(
            loc, f"layer {layer['name']!r} has output shape {shape}: a position is {wanted}", "position-shape"
        )
    if not all(0 <= value < size for value, size in zip(position, sizes, strict=True)):
        extent = "x".join(str(size) for size in sizes)
        raise invalid(
            loc, f"position {position} is outside the {extent} map of layer {layer['name']!r}", "position-out-of-range"
        )


# Layer types (as the listing names them) of nonlinearities other than ReLU, and of modules
# with one inside (attention's softmax). The ReLU rules of deconvnet and guided backprop
# (worker/core/relu_rules.py) are defined for ReLU networks only.
NON_RELU_TYPES = {
    "GELU", "SiLU", "Sigmoid", "Hardswish", "Hardsigmoid", "Tanh", "LeakyReLU", "PReLU", "RReLU", "Mish", "ELU",
    "CELU", "SELU", "GLU", "Softplus", "Softsign", "Softmax", "Softmax2d", "LogSoftmax", "LogSigmoid", "Hardtanh",
    "ReLU6", "Tanhshrink", "Hardshrink", "Softshrink", "Threshold", "QuickGELU", "GELUActivation",
    "NewGELUActivation", "MultiheadAttention",
}  # fmt: skip
RELU_ONLY_METHODS = ("deconvnet", "guided_backprop")
METHODS_FOR_ANY_NETWORK = ("saliency",)


def non_relu_types(record: dict[str, Any], layer: str) -> list[str]:
    """The types of the non-ReLU nonlinearities listed at or before `layer` (in the order the
    listing has them: execution order), each once; [] where the layers are not recorded."""
    found: list[str] = []
    for entry in record.get("layers") or []:
        kind = entry["type"]
        non_relu = kind in NON_RELU_TYPES or (kind.startswith("functional.") and kind != "functional.relu")
        if non_relu and kind not in found:
            found.append(kind)
        if entry["name"] == layer:
            break
    return found


def method_not_applicable(method: str, layer: str, nonlinearities: list[str], loc: list[str | int]):
    """The 422 for a ReLU-only projection method on a network that is not one."""
    named = ", ".join(f"{kind} (softmax)" if kind == "MultiheadAttention" else kind for kind in nonlinearities)
    return invalid(
        loc,
        f"method {method!r} is defined for ReLU networks only: its rule rectifies the signal going down through "
        f"ReLUs, and the forward pass to layer {layer!r} goes through {named}, where it has no definition (Glassbox "
        f"does not silently compute something else). Methods that apply: {', '.join(METHODS_FOR_ANY_NETWORK)} "
        "(the plain gradient).",
        "method-not-applicable",
    )


def check_projection_method(method: str, record: dict[str, Any], layer: str, loc: list[str | int]) -> None:
    """Refuse deconvnet and guided backprop where a non-ReLU nonlinearity comes at or before the
    layer (a GELU, SiLU, sigmoid, attention's softmax, ...): saliency is what applies there."""
    if method not in RELU_ONLY_METHODS:
        return
    found = non_relu_types(record, layer)
    if found:
        raise method_not_applicable(method, layer, found, loc)
