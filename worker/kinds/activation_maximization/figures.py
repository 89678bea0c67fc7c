"""The PNGs of an activation-maximization job: grid.png (units in rows, their images across,
wrapped, every image captioned) and one image-NNN.png per rendered image, at its own size."""

from __future__ import annotations

import math

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.artifacts import png_artifact
from worker.context import ArtifactBlob
from worker.core.figures import image_grid_png
from worker.core.imaging import png_bytes
from worker.kinds.activation_maximization.compute import Rendering
from worker.kinds.activation_maximization.report import RenderedImage

GRID_COLUMNS = 8  # grid.png wraps its images to at most this many columns


def grid_artifact(
    rendering: Rendering, images: list[RenderedImage], params: ActivationMaximizationParams, model: str
) -> ArtifactBlob:
    """The job's grid.png: titled, every image captioned with its unit and activation."""
    resolved = rendering.setup.resolved
    reference = params.reference_dataset
    captions = [_caption(image, resolved["type"], params) for image in images]
    layout = grid_layout(rendering.setup.objective.groups())
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
    png = image_grid_png(
        [[rendering.images[i] for i in row] for row in layout],
        title=f"{model} · {resolved['layer']} · activation maximization ({what} objective)",
        notes=notes,
        captions=[[captions[i] for i in row] for row in layout],
        min_cell=128,
        max_cell=192,
    )
    return png_artifact("grid.png", png)


def image_artifacts(rendering: Rendering, images: list[RenderedImage]) -> list[ArtifactBlob]:
    """image-NNN.png: each rendered image as it is, pixel for pixel."""
    return [png_artifact(image.png, png_bytes(picture)) for image, picture in zip(images, rendering.images)]


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


def _caption(image: RenderedImage, objective_type: str, params: ActivationMaximizationParams) -> str:
    name = "" if image.unit is None else f"unit {image.unit}"
    if image.label:
        name = f"{image.unit} {image.label}"
    if params.images_per_unit > 1:
        name = f"{name} #{image.copy + 1}".strip()
    value = "activation n/a" if image.activation is None else f"act {image.activation:.3g}"
    if image.dead:
        value += " · dead"
    if image.ratio_to_dataset_max is not None:
        value += f"\n{image.ratio_to_dataset_max:.2g}× its best image"
    return f"{name or objective_type}\n{value}"
