"""grid.png of an activation-maximization job: units in rows, their images across, wrapped."""

from __future__ import annotations

import math

import numpy as np

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.core.figures import image_grid_png

GRID_COLUMNS = 8  # grid.png wraps its images to at most this many columns


def grid_layout(groups: list[int], columns: int = GRID_COLUMNS) -> list[list[int]]:
    """Rows of image indices for grid.png: a unit's images side by side (units in rows,
    `images_per_unit` across), several units to a row when they fit in `columns`, a unit with
    more images than that continued on the next row; rows as even as the count allows."""
    units: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        units.setdefault(group, []).append(index)
    per_unit = max((len(v) for v in units.values()), default=1)
    if per_unit >= columns:
        return [
            images[start : start + columns] for images in units.values() for start in range(0, len(images), columns)
        ]
    fits = columns // per_unit
    rows_needed = math.ceil(len(units) / fits)
    per_row = math.ceil(len(units) / rows_needed)
    blocks = list(units.values())
    return [[i for block in blocks[start : start + per_row] for i in block] for start in range(0, len(blocks), per_row)]


def grid_png(
    images: np.ndarray,
    items: list[dict],
    groups: list[int],
    resolved: dict,
    params: ActivationMaximizationParams,
    model: str,
) -> bytes:
    """The job's grid.png: titled, every image captioned with its unit and activation."""
    reference = params.reference_dataset
    captions = []
    for item in items:
        name = "" if item["unit"] is None else f"unit {item['unit']}"
        if item["label"]:
            name = f"{item['unit']} {item['label']}"
        if params.images_per_unit > 1:
            name = f"{name} #{item['copy'] + 1}".strip()
        value = "activation n/a" if item["activation"] is None else f"act {item['activation']:.3g}"
        if item["dead"]:
            value += " · dead"
        if item["ratio_to_dataset_max"] is not None:
            value += f"\n{item['ratio_to_dataset_max']:.2g}× its best image"
        captions.append(f"{name or resolved['type']}\n{value}")
    layout = grid_layout(groups)
    what = resolved["type"]
    if params.images_per_unit > 1:
        arrangement = (
            f"Units in rows, {params.images_per_unit} images per unit across (diversity {params.diversity:g})."
        )
    else:
        arrangement = "One image per unit, left to right, then down."
    notes = [
        f"Each image is rendered from random noise to excite its {what} as much as it can ({params.steps} steps, "
        f"{params.parameterization} parameterization, {params.size} px). {arrangement}",
        "Under each image: its unit and the unit's activation on it"
        + (f"; then that activation over the unit's strongest image in {reference}" if reference else "")
        + ". dead: the unit never activated.",
    ]
    return image_grid_png(
        [[images[i] for i in row] for row in layout],
        title=f"{model} · {resolved['layer']} · activation maximization ({what} objective)",
        notes=notes,
        captions=[[captions[i] for i in row] for row in layout],
        min_cell=128,
        max_cell=192,
    )
