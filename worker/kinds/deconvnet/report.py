"""result.json and the job summary of a deconvnet job: plain data read off `Projections`.

The keys and their order are part of the HTTP contract (docs/DESIGN.md): a client reads
`items[NNN]` next to projection-NNN.png and `reconstructions.npy[NNN]`.
"""

from __future__ import annotations

from typing import Any

from service.kinds.deconvnet import DeconvnetParams
from worker.kinds.deconvnet.compute import ProjectedNeuron, Projections
from worker.kinds.deconvnet.figures import DISPLAY, PNG_MIN_SIDE


def result_document(projections: Projections, params: DeconvnetParams, model: str) -> dict[str, Any]:
    channels = projections.channels
    dead = projections.dead
    return {
        "model": model,
        "layer": params.layer,
        "layer_shape": projections.layer["output_shape"],
        "method": params.method,
        "channels": channels,
        "channel_choice": _channel_choice(projections, params),
        "channel_max_activation": {str(c): projections.channel_max[c] for c in channels},
        "dead_channels": dead,
        "dead_channels_note": "these channels never activate (max <= 0) on the given images: nothing to project"
        if dead
        else None,
        "items": [_item(neuron) for neuron in projections.neurons],
        "reconstructions": {
            "file": "reconstructions.npy",
            "shape": list(projections.reconstructions.shape),
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
        "images": projections.images,
        "index": {k: v for k, v in projections.index.items() if k != "built_now"}
        if projections.index
        else {"used": False, "why": "inline images, or one neuron at a given position: no dataset to index"},
        "params": params.model_dump(mode="json", exclude={"images"}),  # inline images are not echoed back
        "trust": projections.trust,
    }


def summary(projections: Projections, params: DeconvnetParams) -> dict[str, Any]:
    return {
        "layer": params.layer,
        "channels": projections.channels,
        "projections": len(projections.neurons),
        "dead_channels": projections.dead,
        "index_built": bool(projections.index and projections.index["built_now"]),
    }


def _item(neuron: ProjectedNeuron) -> dict[str, Any]:
    return {
        "index": neuron.index,
        "channel": neuron.channel,
        "image_index": neuron.image_index,
        "image_name": neuron.image_name,
        "position": list(neuron.position) if neuron.position else None,
        "activation": neuron.activation,
        "receptive_field": list(neuron.receptive_field),
    }


def _channel_choice(projections: Projections, params: DeconvnetParams) -> dict[str, Any]:
    text, choice = projections.choice_description, projections.choice
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
