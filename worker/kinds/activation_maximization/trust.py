"""The trust panel of an activation-maximization result (result.json `trust`, and per image
`path_similarity` / `path_flagged`).

Four numbers say how far to trust a rendered image:
- ratio_to_dataset_max: its activation against the unit's strongest dataset image;
- robust_activation: its activation under random transforms (a fragile pattern falls apart);
- path_similarity (Geirhos et al. 2024): whether the layers below the unit process it like the
  unit's top natural exemplars, against random dataset images as the baseline
  (worker/core/trust/path_similarity.py); flagged when it looks less like the exemplars than
  random photos do;
- for feature accentuation, the distance to the seed (result.json `accentuation`).
Path similarity needs a dataset: the exemplars and the random images come from
`reference_dataset`; without one the panel says it was not computed and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.core.actmax import unit_top
from worker.core.imaging import prepare_images
from worker.core.trust.path_similarity import DEFINITION, comparison_layers, layer_vectors, path_similarity
from worker.datasets import ImageSet

DATASET_BATCH = 64

CHECKS = {
    "ratio_to_dataset_max": "The image's activation divided by the unit's strongest activation over the "
    "reference dataset's images (above 1: the image excites the unit more than any real image).",
    "robust_activation": "The image's mean activation under random transforms (the job's own); far below "
    "`activation`: the pattern only works pixel-exact.",
    "path_similarity": DEFINITION,
}


def exemplars_of(
    model: torch.nn.Module,
    record: dict[str, Any],
    objective,
    images: ImageSet,
    k: int,
    device: str,
    index: Callable[[int], Any] | None,
    check: Callable[[], None] | None,
) -> list[list[int]]:
    """Per unit of `objective.unit_ids`, its `k` strongest images' numbers in `images`: read from
    the layer's activation index where one serves the objective (`index(k)`), else by a
    forward pass over the dataset. The index keeps one best image per unit by a map's mean and
    `k` by its strongest position (one entry per image): the exemplars are those `k`, Zeiler &
    Fergus's top images (for a vector layer the two rankings are the same)."""
    if index is not None:
        stats = index(k).stats
        ranking = stats.top_mean if stats.top_mean.images.shape[1] >= k else stats.top
        table = ranking.images
        return [[int(i) for i in table[unit, :k]] for unit in objective.unit_ids]

    def batches():
        for start in range(0, len(images), DATASET_BATCH):
            if check is not None:
                check()
            yield prepare_images(images.images[start : start + DATASET_BATCH], record["input"], device)

    return unit_top(model, objective, batches(), k)[1]


def path_similarity_panel(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    objective,
    to_input,
    delivered: np.ndarray,
    *,
    device: str,
    dataset: Callable[[str], ImageSet] | None,
    index: Callable[[int], Any] | None,
    check: Callable[[], None] | None,
) -> dict[str, Any]:
    """result.json's `trust.path_similarity` (or why it is missing) and per image its overall
    similarity and flag."""
    spec = params.path_similarity
    if not spec.enabled:
        return {"computed": False, "reason": "path_similarity.enabled is false"}
    if not params.reference_dataset or dataset is None:
        return {"computed": False, "reason": "needs reference_dataset (its images are the exemplars and the baseline)"}
    layers = comparison_layers(record.get("layers") or [], objective.layer)
    if not layers:
        return {"computed": False, "reason": f"no layer below {objective.layer!r} to compare on"}
    started = time.perf_counter()
    images = dataset(params.reference_dataset)
    count = min(spec.exemplars, len(images))
    top = exemplars_of(model, record, objective, images, count, device, index, check)
    rng = np.random.default_rng(params.seed)
    randoms = sorted(rng.choice(len(images), size=min(spec.random_images, len(images)), replace=False).tolist())
    random_input = prepare_images(images.read(randoms), record["input"], device)
    random_vectors = layer_vectors(model, random_input, layers)  # once for all the units
    shown = torch.from_numpy(delivered).to(device)
    groups = objective.groups()
    units, per_image = [], [None] * objective.n
    for position, unit in enumerate(objective.unit_ids):
        mine = [i for i, g in enumerate(groups) if g == position]
        exemplar_input = prepare_images(images.read(top[position]), record["input"], device)
        try:
            result = path_similarity(
                model, layers, to_input(shown[mine]), exemplar_input, random_input, random_vectors=random_vectors
            )
        except ValueError as exc:
            units.append({"unit": unit if objective.has_units else None, "computed": False, "reason": str(exc)})
            continue
        details = result.to_dict()
        for image, entry in zip(mine, details["visualizations"]):
            per_image[image] = (entry["path_similarity"], entry["flagged"])
        units.append({
            "unit": unit if objective.has_units else None, "images": mine,
            "exemplar_images": [images.names[i] for i in top[position]], **details,
        })  # fmt: skip
    return {
        "computed": True,
        "definition": DEFINITION,
        "layers": layers,
        "random_images": [images.names[i] for i in randoms],
        "units": units,
        "per_image": per_image,
        "seconds": round(time.perf_counter() - started, 4),
    }
