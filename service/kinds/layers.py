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
    shape = layer["output_shape"]
    if len(shape) != 3:
        raise invalid(loc, f"layer {layer['name']!r} has no spatial positions (output shape {shape})", "no-positions")
    height, width = shape[1], shape[2]
    y, x = position
    if not (0 <= y < height and 0 <= x < width):
        raise invalid(loc, f"position {position} is outside the {height}x{width} map of layer {layer['name']!r}", "position-out-of-range")

