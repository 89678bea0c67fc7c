"""An activation-maximization objective resolved against the model's catalog record.

The API runs it at submit (the kind's check) and the worker again once the model is loaded
(a torchvision model's layers are only known after a job has loaded it): the layer (the last
one by default, for a class), integer units (class labels resolved), the position and the
direction vector, each checked against the recorded layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.kinds.cost import CONTAINER_TYPES
from service.kinds.layers import MAX_CHOICES_LISTED, check_position, check_units, find_layer
from service.validation import invalid

if TYPE_CHECKING:
    from service.kinds.activation_maximization import ActivationMaximizationParams


def default_class_layer(record: dict[str, Any]) -> str | None:
    """The model's last layer that is not a container (a Sequential's output repeats its last
    child's): shapes-cnn's `classifier.2`, vgg16's `classifier.6`, resnet's `fc`."""
    layers = record.get("layers") or []
    for entry in reversed(layers):
        if entry.get("type") not in CONTAINER_TYPES:
            return entry["name"]
    return layers[-1]["name"] if layers else None


def _class_units(units: list[int | str], record: dict[str, Any], loc: list[str | int]) -> list[int]:
    labels = record.get("labels") or []
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for i, unit in enumerate(units):
        if isinstance(unit, int):
            out.append(unit)
            continue
        if unit not in index:
            if not labels:
                raise invalid([*loc, i], f"model {record['id']!r} has no labels; give class indices", "unknown-label")
            listed = labels if len(labels) <= MAX_CHOICES_LISTED else labels[:MAX_CHOICES_LISTED] + ["..."]
            raise invalid(
                [*loc, i], f"unknown class label {unit!r}; valid labels: {', '.join(listed)}", "unknown-label"
            )
        out.append(index[unit])
    return out


def resolve_objective(params: ActivationMaximizationParams, record: dict[str, Any]) -> dict[str, Any] | None:
    """The objective with its layer, integer units and position checked against `record`:
    {"type", "layer", "units", "position", "vector", "layer_shape"}. Raises InvalidRequest;
    None when the model's layers are not recorded yet (the worker resolves after loading)."""
    base = ["body", "params", "objective"]
    if record.get("kind") not in (None, "image"):
        raise invalid(
            ["body", "model"],
            f"activation maximization needs an image model; {record['id']!r} is {record.get('kind')}",
            "not-an-image-model",
        )
    objective = params.objective
    if not record.get("layers"):
        if objective.type == "class" and any(isinstance(u, str) for u in objective.units) and record.get("labels"):
            _class_units(objective.units, record, [*base, "units"])
        return None
    name = objective.layer or default_class_layer(record)
    layer = find_layer(record, name, [*base, "layer"])
    assert layer is not None
    units = (
        _class_units(objective.units, record, [*base, "units"]) if objective.type == "class" else list(objective.units)
    )
    check_units(layer, units, [*base, "units"])
    shape = list(layer["output_shape"])
    position = objective.position
    if position is not None:
        check_position(layer, position, [*base, "position"])
    elif objective.type == "neuron" and len(shape) == 3:
        position = [shape[1] // 2, shape[2] // 2]
    elif objective.type == "neuron" and len(shape) == 2:
        position = [_centre_token(layer, shape[1])]
    if objective.type == "neuron" and len(shape) not in (1, 2, 3):
        raise invalid(
            [*base, "layer"],
            f"layer {name!r} has output shape {shape}; a neuron needs [C], [C, tokens] or [C, H, W]",
            "unsupported-layer",
        )
    if objective.vector is not None and len(objective.vector) != int(layer["units"]):
        raise invalid(
            [*base, "vector"],
            f"vector has {len(objective.vector)} entries; layer {name!r} has {layer['units']} channels",
            "vector-length",
        )
    return {
        "type": objective.type,
        "layer": name,
        "units": units,
        "position": position,
        "vector": objective.vector,
        "layer_shape": shape,
    }


def _centre_token(layer: dict[str, Any], tokens: int) -> int:
    """A [features, tokens] layer's default neuron position: the token of the image's centre
    patch where the layer maps tokens to patches (`token_grid`), else the middle token."""
    grid, prefix = layer.get("token_grid"), int(layer.get("prefix_tokens") or 0)
    if grid:
        rows, columns = grid
        return prefix + (rows // 2) * columns + columns // 2
    return tokens // 2


def check_activation_maximization(params: ActivationMaximizationParams, record: dict[str, Any]) -> None:
    resolve_objective(params, record)
    if params.accentuation is not None and params.accentuation.layer is not None:
        find_layer(record, params.accentuation.layer, ["body", "params", "accentuation", "layer"])
