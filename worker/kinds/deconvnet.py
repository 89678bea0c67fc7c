"""The `deconvnet` job: adapts a job record to worker/core/deconvnet.py and writes artifacts."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import torch

from service.kinds.deconvnet import DEFAULT_TOP_CHANNELS, DeconvnetParams, check_deconvnet
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput
from worker.core.deconvnet import (
    ChannelChoice,
    Neuron,
    channel_maxima,
    distinct_channels,
    project,
    receptive_fields,
    top_neurons,
)
from worker.core.figures import image_grid_png
from worker.core.imaging import denormalize, enlarge, png_bytes, prepare_images
from worker.core.probe import capture_activation
from worker.datasets import decode_image

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


def run(ctx: JobContext, params: DeconvnetParams) -> JobOutput:
    ctx.progress(0.0, "loading the model and images", force=True)
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    if not record.get("layers"):
        raise JobFailed("model-invalid", "The model's layers are unknown", "inspection recorded no layers")
    check_deconvnet(params, record)  # the submit-time check, now with the record as loaded
    layer = next(entry for entry in record["layers"] if entry["name"] == params.layer)

    if params.dataset is not None:
        image_set = ctx.datasets.images(ctx.tenant, params.dataset)
        names, pictures = image_set.names, image_set.images
    else:
        names = None
        pictures = [decode_image(base64.b64decode(text.split(",", 1)[-1]), f"images[{i}]") for i, text in enumerate(params.images)]
    spec = record["input"]["image"]

    def batches():
        for start in range(0, len(pictures), params.batch_size):
            yield prepare_images(pictures[start : start + params.batch_size], record["input"], ctx.device)

    ctx.progress(0.05, f"forward pass of {len(pictures)} images to {params.layer}")
    values, positions = channel_maxima(model, batches(), params.layer, check=ctx.check)
    if params.position is not None:
        channel, position = params.channels[0], tuple(params.position)
        first = prepare_images(pictures[:1], record["input"], ctx.device)
        with torch.no_grad():
            value = float(capture_activation(model, first, params.layer)[(0, channel, *position)])
        neurons = [Neuron(0, channel, position, value)]
        channels = [channel]
        choice = None
    else:
        choice = None if params.channels else distinct_channels(values, params.top_channels or DEFAULT_TOP_CHANNELS, params.top_k)
        channels = params.channels or choice.channels
        neurons = top_neurons(values, positions, channels, params.top_k)
    per_channel_max = {c: float(values[:, c].max()) for c in channels}
    dead = [c for c in channels if per_channel_max[c] <= 0.0]
    live = [n for n in neurons if n.channel not in dead]

    # Only the images the kept neurons live in are needed from here on.
    used = sorted({n.image_index for n in live}) or [0]
    row_of = {image_index: row for row, image_index in enumerate(used)}
    images = prepare_images([pictures[i] for i in used], record["input"], ctx.device)
    local = [Neuron(row_of[n.image_index], n.channel, n.position, n.activation) for n in live]

    ctx.progress(0.3, f"projecting {len(live)} neurons ({params.method})")
    total = max(1, len(live))
    done = 0

    def check_and_report() -> None:
        nonlocal done
        done += params.batch_size
        ctx.progress(0.3 + 0.5 * min(1.0, done / total), f"projected {min(done, total)} of {total} neurons")

    projections = project(model, images, params.layer, local, params.method, params.batch_size, check=check_and_report)
    ctx.progress(0.85, "receptive fields and figures")
    boxes = receptive_fields(model, images[:1], params.layer, [n.position for n in live], batch_size=params.batch_size)

    items = []
    for index, neuron in enumerate(live):
        items.append(
            {
                "index": index,
                "channel": neuron.channel,
                "image_index": neuron.image_index,
                "image_name": names[neuron.image_index] if names else None,
                "position": list(neuron.position) if neuron.position else None,
                "activation": neuron.activation,
                "receptive_field": list(boxes[neuron.position]),
            }
        )
    reconstructions = projections.float().cpu().numpy()
    originals = denormalize(images, spec).clamp(0, 1).cpu().numpy()  # rows as in `used`
    display = [_crop(_for_display(p, item), item, params.crop) for p, item in zip(reconstructions, items)]
    patches = [_crop(originals[row_of[item["image_index"]]], item, params.crop) for item in items]
    artifacts = [ArtifactBlob("reconstructions.npy", "application/octet-stream", _npy(reconstructions))]
    for index, (picture, patch) in enumerate(zip(display, patches)):
        artifacts.append(ArtifactBlob(f"projection-{index:03d}.png", "image/png", png_bytes(enlarge(picture, PNG_MIN_SIDE))))
        artifacts.append(ArtifactBlob(f"patch-{index:03d}.png", "image/png", png_bytes(enlarge(patch, PNG_MIN_SIDE))))
    rows_chosen = _choice_text(params, choice, len(pictures))
    figure = _figure(ctx.model, layer, items, display, patches, channels, dead, per_channel_max, rows_chosen, len(pictures), params)
    artifacts.append(ArtifactBlob("grid.png", "image/png", figure))
    result = {
        "model": ctx.model,
        "layer": params.layer,
        "layer_shape": layer["output_shape"],
        "method": params.method,
        "channels": channels,
        "channel_choice": _choice_record(params, choice, rows_chosen),
        "channel_max_activation": {str(c): per_channel_max[c] for c in channels},
        "dead_channels": dead,
        "dead_channels_note": "these channels never activate (max <= 0) on the given images: nothing to project"
        if dead
        else None,
        "items": items,
        "reconstructions": {
            "file": "reconstructions.npy",
            "shape": list(reconstructions.shape),
            "space": "the model's input tensor space (normalized by the input contract), uncropped; "
            "each seeded with its activation's value",
        },
        "display": DISPLAY,
        "figure": "grid.png: one row per channel (its number and largest activation on the left), its top images "
        "strongest first, each as a pair: the projection, then the image patch"
        + (" under the neuron's receptive field" if params.crop else " (the whole image)")
        + "; both enlarged with nearest neighbour",
        "pngs": f"projection-NNN.png and patch-NNN.png for items[NNN], each enlarged (nearest, whole factor) to at "
        f"least {PNG_MIN_SIDE} px on its longer side"
        + ("; the patch is the image under the receptive field" if params.crop else ""),
        "images": len(pictures),
        "params": params.model_dump(mode="json", exclude={"images"}),
    }
    artifacts.append(ArtifactBlob("result.json", "application/json", json.dumps(result, indent=1).encode()))
    summary = {"layer": params.layer, "channels": channels, "projections": len(items), "dead_channels": dead}
    return JobOutput(summary=summary, artifacts=artifacts)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()


def _for_display(projection: np.ndarray, item: dict) -> np.ndarray:
    """The projection as an image; its scale read inside the receptive field, where the signal is."""
    scale = float(np.percentile(np.abs(_crop(projection, item, True)), DISPLAY_PERCENTILE))
    if scale == 0.0:
        scale = float(np.abs(projection).max())
    if scale == 0.0:
        return np.full_like(projection, 0.5)
    return np.clip(0.5 + 0.5 * projection / scale, 0.0, 1.0)


def _crop(picture: np.ndarray, item: dict, crop: bool) -> np.ndarray:
    if not crop:
        return picture
    y0, x0, y1, x1 = item["receptive_field"]
    return picture[:, y0:y1, x0:x1]


def _choice_text(params: DeconvnetParams, choice: ChannelChoice | None, images: int) -> str:
    if params.position is not None:
        return f"the neuron at position {params.position} of channel {params.channels[0]} in the given image"
    if choice is None:
        return "the channels asked for"
    return (
        f"chosen to show different things: the strongest channel, then each time the one whose top {params.top_k} "
        f"images overlap least with those of the channels already shown, among the {choice.candidates} channels "
        f"that activate on the {images} images"
    )


def _choice_record(params: DeconvnetParams, choice: ChannelChoice | None, text: str) -> dict:
    if params.position is not None:
        return {"rule": "position", "description": text}
    if choice is None:
        return {"rule": "explicit", "description": text}
    return {
        "rule": "distinct_top_images",
        "description": text,
        "candidates": choice.candidates,
        "shared_top_images": {str(c): n for c, n in zip(choice.channels, choice.shared)},
        "shared_top_images_note": "per channel: the most of its top images it shares with any one channel chosen "
        "before it (0: all different)",
    }


def _image_text(item: dict) -> str:
    return item["image_name"] or f"image {item['image_index']}"


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _figure(model, layer, items, display, patches, channels, dead, maxima, chosen, images, params) -> bytes:
    """Zeiler & Fergus's figure: a row per channel, each top image as a pair (the projection,
    then the image patch it came from), all enlarged to a legible size."""
    rows, labels, captions = [], [], []
    for channel in channels:
        if channel in dead:
            continue
        mine = [item for item in items if item["channel"] == channel]
        rows.append([picture for item in mine for picture in (display[item["index"]], patches[item["index"]])])
        labels.append(f"ch {channel}\nmax {_fmt(maxima[channel])}")
        captions.append([f"{_fmt(item['activation'])}\n{_image_text(item)}" for item in mine])
    shape = "×".join(str(v) for v in layer["output_shape"])
    title = f"{model} · {layer['name']} ({layer.get('type', 'layer')}, {shape}) · {METHOD_NAMES[params.method]}"
    per_row = max((len(row) // 2 for row in rows), default=0)
    notes = [
        f"Rows: channels, {chosen}. max = the channel's largest activation over the {images} images.",
        f"Columns: each channel's top {per_row} images, strongest first, in pairs. Left: the projection of that "
        "activation back to pixels (grey = 0, each scaled to its own range). Right: "
        + ("the image patch under the neuron's receptive field." if params.crop else "the image.")
        + " Under each pair: the activation and the image.",
    ]
    if dead:
        notes.append(f"Not shown: channels {', '.join(map(str, dead))} never activate on these images (max <= 0).")
    column_labels = [f"#{j + 1}" + (" strongest" if j == 0 else "") for j in range(per_row)]
    return image_grid_png(
        rows, title=title, notes=notes, row_labels=labels, column_labels=column_labels, captions=captions, group=2
    )
