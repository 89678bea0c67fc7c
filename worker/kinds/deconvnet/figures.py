"""The PNGs of a deconvnet job: each projection and its image patch, and Zeiler & Fergus's grid.

A projection's values have no natural scale, so each is shown around grey (zero) and scaled to
its own receptive field, where its signal is (DISPLAY says exactly how; result.json repeats it).
"""

from __future__ import annotations

import numpy as np

from service.kinds.deconvnet import DeconvnetParams
from worker.artifacts import png_artifact
from worker.context import ArtifactBlob
from worker.core.figures import image_grid_png
from worker.core.imaging import enlarge, png_bytes
from worker.kinds.deconvnet.compute import ProjectedNeuron, Projections

DISPLAY_PERCENTILE = 99.5
DISPLAY = (
    f"each projection is shown as 0.5 + 0.5 * p / s, clipped to [0, 1], where s is the {DISPLAY_PERCENTILE}th "
    "percentile of |p| over its receptive field's pixels and channels (gray is zero; the rarest extremes saturate, so that one "
    "pixel does not wash out the rest)"
)
PNG_MIN_SIDE = 128  # projection-NNN.png and patch-NNN.png are enlarged (nearest) to at least this
METHOD_NAMES = {
    "deconvnet": "deconvnet (Zeiler & Fergus)",
    "guided_backprop": "guided backpropagation",
    "saliency": "saliency (plain gradient)",
}


def figure_artifacts(projections: Projections, params: DeconvnetParams, model: str) -> list[ArtifactBlob]:
    """projection-NNN.png and patch-NNN.png per neuron (in that order, pair by pair), then grid.png."""
    shown = projections.neurons
    display = [crop_to_field(display_projection(p, n), n, params.crop) for p, n in zip(projections.reconstructions, shown)]
    patches = [crop_to_field(projections.originals[projections.original_row[n.image_index]], n, params.crop) for n in shown]
    artifacts = []
    for index, (picture, patch) in enumerate(zip(display, patches)):
        artifacts.append(png_artifact(f"projection-{index:03d}.png", png_bytes(enlarge(picture, PNG_MIN_SIDE))))
        artifacts.append(png_artifact(f"patch-{index:03d}.png", png_bytes(enlarge(patch, PNG_MIN_SIDE))))
    artifacts.append(png_artifact("grid.png", _grid(projections, display, patches, params, model)))
    return artifacts


def display_projection(projection: np.ndarray, neuron: ProjectedNeuron) -> np.ndarray:
    """The projection as an image; its scale read inside the receptive field, where the signal is."""
    scale = float(np.percentile(np.abs(crop_to_field(projection, neuron, True)), DISPLAY_PERCENTILE))
    if scale == 0.0:
        scale = float(np.abs(projection).max())
    if scale == 0.0:
        return np.full_like(projection, 0.5)
    return np.clip(0.5 + 0.5 * projection / scale, 0.0, 1.0)


def crop_to_field(picture: np.ndarray, neuron: ProjectedNeuron, crop: bool) -> np.ndarray:
    if not crop:
        return picture
    y0, x0, y1, x1 = neuron.receptive_field
    return picture[:, y0:y1, x0:x1]


def _image_text(neuron: ProjectedNeuron) -> str:
    return neuron.image_name or f"image {neuron.image_index}"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _grid(
    projections: Projections, display: list[np.ndarray], patches: list[np.ndarray], params: DeconvnetParams, model: str
) -> bytes:
    """Zeiler & Fergus's figure: a row per channel, each top image as a pair (the projection,
    then the image patch it came from), all enlarged to a legible size."""
    rows, labels, captions = [], [], []
    for channel in projections.channels:
        if channel in projections.dead:
            continue
        mine = [n for n in projections.neurons if n.channel == channel]
        rows.append([picture for n in mine for picture in (display[n.index], patches[n.index])])
        labels.append(f"ch {channel}\nmax {_number(projections.channel_max[channel])}")
        captions.append([f"{_number(n.activation)}\n{_image_text(n)}" for n in mine])
    layer = projections.layer
    shape = "×".join(str(v) for v in layer["output_shape"])
    title = f"{model} · {layer['name']} ({layer.get('type', 'layer')}, {shape}) · {METHOD_NAMES[params.method]}"
    per_row = max((len(row) // 2 for row in rows), default=0)
    notes = [
        f"Rows: channels, {projections.choice_description}. max = the channel's largest activation over the "
        f"{projections.images} images.",
        f"Columns: each channel's top {per_row} images, strongest first, in pairs. Left: the projection of that "
        "activation back to pixels (grey = 0, each scaled to its own range). Right: "
        + ("the image patch under the neuron's receptive field." if params.crop else "the image.")
        + " Under each pair: the activation and the image.",
    ]
    if projections.dead:
        dead = ", ".join(map(str, projections.dead))
        notes.append(f"Not shown: channels {dead} never activate on these images (max <= 0).")
    column_labels = [f"#{j + 1}" + (" strongest" if j == 0 else "") for j in range(per_row)]
    return image_grid_png(
        rows, title=title, notes=notes, row_labels=labels, column_labels=column_labels, captions=captions, group=2
    )
