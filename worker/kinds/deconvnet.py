"""The `deconvnet` job: adapts a job record to worker/core/deconvnet.py and writes artifacts."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import torch

from service.kinds.deconvnet import DeconvnetParams
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput
from worker.core.deconvnet import (
    Neuron,
    channel_maxima,
    project,
    receptive_fields,
    strongest_channels,
    top_neurons,
)
from worker.core.imaging import denormalize, grid_png, png_bytes, prepare_images
from worker.core.probe import capture_activation
from worker.datasets import decode_image

DEFAULT_TOP_CHANNELS = 8
DISPLAY = "each projection is shown as 0.5 + 0.5 * p / max|p| over its own pixels and channels (gray is zero)"


def run(ctx: JobContext, params: DeconvnetParams) -> JobOutput:
    ctx.progress(0.0, "loading the model and images", force=True)
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    if "image" not in (record.get("input") or {}):
        raise JobFailed("invalid-params", "deconvnet needs an image model", f"{ctx.model} is not one")
    layer = next((entry for entry in record["layers"] if entry["name"] == params.layer), None)
    if layer is None:
        names = ", ".join(entry["name"] for entry in record["layers"])
        raise JobFailed("invalid-params", f"Unknown layer {params.layer!r}", f"valid layers: {names}")
    if params.channels and max(params.channels) >= layer["units"]:
        raise JobFailed("invalid-params", "Channel out of range", f"layer {params.layer} has {layer['units']} channels")

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
    else:
        channels = params.channels or strongest_channels(values, params.top_channels or DEFAULT_TOP_CHANNELS)
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
    display = [_for_display(p) for p in reconstructions]
    artifacts = [ArtifactBlob("reconstructions.npy", "application/octet-stream", _npy(reconstructions))]
    for index, picture in enumerate(display):
        artifacts.append(ArtifactBlob(f"projection-{index:03d}.png", "image/png", png_bytes(_crop(picture, items[index], params.crop))))
    artifacts.append(
        ArtifactBlob("grid.png", "image/png", _figure(items, display, originals, row_of, channels, dead, params))
    )
    result = {
        "model": ctx.model,
        "layer": params.layer,
        "layer_shape": layer["output_shape"],
        "method": params.method,
        "channels": channels,
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
        "figure": "grid.png: one row per channel, the projections on the left and the matching image "
        "patches on the right" + (", cropped to each neuron's receptive field" if params.crop else ""),
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


def _for_display(projection: np.ndarray) -> np.ndarray:
    scale = float(np.abs(projection).max())
    if scale == 0.0:
        return np.full_like(projection, 0.5)
    return 0.5 + 0.5 * projection / scale


def _crop(picture: np.ndarray, item: dict, crop: bool) -> np.ndarray:
    if not crop:
        return picture
    y0, x0, y1, x1 = item["receptive_field"]
    return picture[:, y0:y1, x0:x1]


def _figure(items, display, originals, row_of, channels, dead, params) -> bytes:
    rows, labels = [], []
    for channel in channels:
        if channel in dead:
            continue
        mine = [(item, display[item["index"]]) for item in items if item["channel"] == channel]
        projections = [_crop(picture, item, params.crop) for item, picture in mine]
        patches = [_crop(originals[row_of[item["image_index"]]], item, params.crop) for item, _ in mine]
        rows.append([*projections, None, *patches])
        labels.append(f"ch {channel}")
    if not rows:
        rows, labels = [[None]], ["all dead"]
    return grid_png(rows, cell_size=64, row_labels=labels, label_width=48)
