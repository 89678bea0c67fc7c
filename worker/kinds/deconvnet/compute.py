"""The PyTorch half of a deconvnet job: which neurons to show, and their projections to pixels.

Everything after this (result.json, the PNGs) is drawn from the `Projections` it returns, so
the model and the images are read here only.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.kinds.deconvnet import DEFAULT_TOP_CHANNELS, DeconvnetParams, check_deconvnet
from service.kinds.layers import method_not_applicable
from worker.context import JobContext, JobFailed
from worker.core.deconvnet import (
    ChannelChoice,
    Neuron,
    channel_maxima,
    distinct_channels,
    project,
    receptive_fields,
    top_neurons,
)
from worker.core.imaging import denormalize, prepare_images
from worker.core.probe import capture_activation
from worker.core.relu_rules import NonReLUNonlinearity
from worker.core.trust.randomization import DEFINITION as RANDOMIZATION_DEFINITION
from worker.core.trust.randomization import randomization_check
from worker.datasets import decode_image
from worker.indexes import IndexAccess, LayerIndex


@dataclass(frozen=True)
class ProjectedNeuron:
    """One neuron shown: `index` is its row in `Projections.reconstructions` (and the NNN of
    its PNGs); `image_index` indexes the job's images (the dataset's, or the inline ones)."""

    index: int
    channel: int
    image_index: int
    image_name: str | None
    position: tuple[int, ...]  # (y, x) in the layer's map; () for a vector layer
    activation: float
    receptive_field: tuple[int, int, int, int]  # (y0, x0, y1, x1) in input pixels


@dataclass
class Projections:
    layer: dict[str, Any]  # the layer's entry in the model record (name, type, output_shape)
    images: int  # how many images were searched
    channels: list[int]  # shown in this order (dead ones included: the result lists them)
    choice: ChannelChoice | None  # how the channels were chosen, when the job did not name them
    choice_description: str  # the same, in a sentence (result.json and the figure's notes)
    channel_max: dict[int, float]  # each channel's largest activation over the images
    dead: list[int]  # channels that never activate (max <= 0): nothing to project
    neurons: list[ProjectedNeuron]  # strongest first within each channel
    reconstructions: np.ndarray  # [neurons, C, H, W] float32 in the model's input space, uncropped
    originals: np.ndarray  # [images used, C, H, W] in [0, 1]: the images the neurons live in
    original_row: dict[int, int]  # image_index -> row of `originals`
    layer_index: LayerIndex | None = None  # the activation index the top images came from
    trust: dict[str, Any] | None = None  # the randomization check (params.randomization_check)
    randomized: np.ndarray | None = None  # [neurons, C, H, W]: the same projections, weights randomized

    @property
    def index(self) -> dict[str, Any] | None:
        """What result.json says about the index: the same in every job that reads it (identical
        jobs give identical artifacts); whether this job built it is in the job's summary."""
        if self.layer_index is None:
            return None
        record = self.layer_index.record
        return {"used": True, "id": record["id"], "k": record["k"], "images": record["images"],
                "built_now": self.layer_index.built_now}  # fmt: skip


def project_neurons(ctx: JobContext, params: DeconvnetParams) -> Projections:
    """Load the model and the images, pick the neurons (the top images of the chosen channels,
    or the one neuron asked for) and project each back to pixels."""
    ctx.progress(0.0, "loading the model and images", force=True)
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    if not record.get("layers"):
        raise JobFailed("model-invalid", "The model's layers are unknown", "inspection recorded no layers")
    check_deconvnet(params, record)  # the submit-time check, now with the record as loaded
    layer = next(entry for entry in record["layers"] if entry["name"] == params.layer)
    names, pictures = _pictures(ctx, params)
    spec = record["input"]["image"]

    def batches():
        for start in range(0, len(pictures), params.batch_size):
            yield prepare_images(pictures[start : start + params.batch_size], record["input"], ctx.device)

    layer_index = None
    if params.dataset is not None and params.position is None:
        # Z&F's search through the dataset is the activation index's top-k (read, or built
        # here and kept): only the images the projected neurons live in are forwarded again.
        values, positions, image_of_row, layer_index = _maxima_from_index(ctx, params, loaded)
    else:
        ctx.progress(0.05, f"forward pass of {len(pictures)} images to {params.layer}")
        values, positions = channel_maxima(model, batches(), params.layer, check=ctx.check)
        image_of_row = None
    if params.position is not None:
        channel, position = params.channels[0], tuple(params.position)
        first = prepare_images(pictures[:1], record["input"], ctx.device)
        with torch.no_grad():
            value = float(capture_activation(model, first, params.layer)[(0, channel, *position)])
        neurons = [Neuron(0, channel, position, value)]
        channels = [channel]
        choice = None
    else:
        choice = (
            None
            if params.channels
            else distinct_channels(values, params.top_channels or DEFAULT_TOP_CHANNELS, params.top_k)
        )
        channels = params.channels or choice.channels
        neurons = top_neurons(values, positions, channels, params.top_k)
        if image_of_row is not None:  # rows of the index's images -> the dataset's image numbers
            neurons = [Neuron(image_of_row[n.image_index], n.channel, n.position, n.activation) for n in neurons]
    channel_max = {c: float(values[:, c].max()) for c in channels}
    dead = [c for c in channels if channel_max[c] <= 0.0]
    live = [n for n in neurons if n.channel not in dead]

    # Only the images the kept neurons live in are needed from here on.
    used = sorted({n.image_index for n in live}) or [0]
    original_row = {image_index: row for row, image_index in enumerate(used)}
    images = prepare_images([pictures[i] for i in used], record["input"], ctx.device)
    local = [Neuron(original_row[n.image_index], n.channel, n.position, n.activation) for n in live]

    ctx.progress(0.3, f"projecting {len(live)} neurons ({params.method})")
    total = max(1, len(live))
    done = 0

    def check_and_report() -> None:
        nonlocal done
        done += params.batch_size
        ctx.progress(0.3 + 0.5 * min(1.0, done / total), f"projected {min(done, total)} of {total} neurons")

    try:
        projections = project(
            model, images, params.layer, local, params.method, params.batch_size, check=check_and_report
        )
    except NonReLUNonlinearity as exc:  # one the record does not list (a softmax inside a module, ...)
        raise method_not_applicable(
            params.method, params.layer, [exc.nonlinearity], ["body", "params", "method"]
        ) from exc
    sanity = None
    if params.randomization_check and live:
        ctx.progress(0.8, "the randomization check: the same projections with the weights randomized")
        sanity = randomization_check(model, images, params.layer, local, params.method, seed=params.seed,
                                    real=projections, batch_size=params.batch_size, check=ctx.check)  # fmt: skip
    ctx.progress(0.85, "receptive fields and figures")
    boxes = receptive_fields(model, images[:1], params.layer, [n.position for n in live], batch_size=params.batch_size)
    shown = [
        ProjectedNeuron(
            index=index,
            channel=neuron.channel,
            image_index=neuron.image_index,
            image_name=names[neuron.image_index] if names else None,
            position=neuron.position,
            activation=neuron.activation,
            receptive_field=tuple(boxes[neuron.position]),
        )
        for index, neuron in enumerate(live)
    ]
    return Projections(
        layer=layer,
        images=len(pictures),
        channels=channels,
        choice=choice,
        choice_description=_choice_description(params, choice, len(pictures)),
        channel_max=channel_max,
        dead=dead,
        neurons=shown,
        reconstructions=projections.float().cpu().numpy(),
        originals=denormalize(images, spec).clamp(0, 1).cpu().numpy(),
        original_row=original_row,
        layer_index=layer_index,
        trust={"randomization_check": randomization_panel(sanity, params)},
        randomized=sanity.randomized_projections.float().cpu().numpy() if sanity is not None else None,
    )


def _maxima_from_index(
    ctx: JobContext, params: DeconvnetParams, loaded
) -> tuple[torch.Tensor, torch.Tensor, list[int], LayerIndex]:
    """Per channel, its top images from the layer's activation index, as `channel_maxima`
    gives them over all images but only for the images in some channel's top k (the others
    are -inf: never among a channel's top `top_k <= k`). Returns (values, positions, the
    dataset image of each row, the index)."""
    access = IndexAccess(ctx, loaded.record, params.dataset)
    found = access.find(params.layer, params.top_k)
    if found is None:
        images = ctx.datasets.images(ctx.tenant, params.dataset)
        ctx.progress(0.02, f"indexing {len(images)} images at {params.layer} (kept for the next jobs)")
        found = access.build_here(
            loaded.module, images, params.layer, params.top_k, params.batch_size,
            progress=lambda fraction: ctx.progress(0.02 + 0.26 * fraction, f"indexed {fraction:.0%} of the images"),
        )  # fmt: skip
    top = found.stats.top
    image_of_row = sorted(set(top.images.flatten().tolist()))
    row = {image: position for position, image in enumerate(image_of_row)}
    channels, kept = top.values.shape
    values = torch.full((len(image_of_row), channels), float("-inf"))
    positions = torch.zeros((len(image_of_row), channels, top.positions.shape[-1]), dtype=torch.long)
    for channel in range(channels):
        rows = [row[i] for i in top.images[channel].tolist()]
        values[rows, channel] = top.values[channel].float().cpu()
        positions[rows, channel] = top.positions[channel].cpu()
    return values, positions, image_of_row, found


def _pictures(ctx: JobContext, params: DeconvnetParams) -> tuple[list[str] | None, list[np.ndarray]]:
    """(names, uint8 pictures): a dataset's, or the inline images (data URLs or bare base64)."""
    if params.dataset is not None:
        image_set = ctx.datasets.images(ctx.tenant, params.dataset)
        return image_set.names, image_set.images
    pictures = [
        decode_image(base64.b64decode(text.split(",", 1)[-1]), f"images[{i}]") for i, text in enumerate(params.images)
    ]
    return None, pictures


def _choice_description(params: DeconvnetParams, choice: ChannelChoice | None, images: int) -> str:
    if params.position is not None:
        return f"the neuron at position {params.position} of channel {params.channels[0]} in the given image"
    if choice is None:
        return "the channels asked for"
    return (
        f"chosen to show different things: the strongest channel, then each time the one whose top {params.top_k} "
        f"images overlap least with those of the channels already shown, among the {choice.candidates} channels "
        f"that activate on the {images} images"
    )


def randomization_panel(check, params: DeconvnetParams) -> dict[str, Any]:
    """result.json's `trust.randomization_check`: the numbers, or why there are none."""
    if not params.randomization_check:
        return {"computed": False, "reason": "ask with randomization_check: true (about two more projection passes)",
                "definition": RANDOMIZATION_DEFINITION}  # fmt: skip
    if check is None:
        return {"computed": False, "reason": "no live neuron to project", "definition": RANDOMIZATION_DEFINITION}
    return {"computed": True, **check.to_dict()}
