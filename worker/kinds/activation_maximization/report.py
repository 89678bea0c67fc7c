"""result.json and the job summary of an activation-maximization job: plain data read off a
`Rendering`, one `RenderedImage` record per image (result.json's `images`, in field order)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.kinds.activation_maximization.compute import ROBUST_SAMPLES, Rendering


@dataclass
class ModelLoad:
    """How the model was loaded (result.json's timing; only the worker's `run` knows it)."""

    seconds: float
    cache_hit: bool


@dataclass
class RenderedImage:
    index: int
    unit: int | None  # None where units mean nothing (a layer or direction objective)
    label: str | None  # the class label of `unit` (class objectives of models with labels)
    copy: int  # which of the unit's `images_per_unit` images this is, from 0
    png: str  # its PNG artifact
    activation: float | None  # the objective on the finished image (None when not finite)
    robust_activation: float | None  # its mean under ROBUST_SAMPLES random transforms
    dataset_max: float | None  # the unit's best value on a reference dataset image
    dataset_max_image: str | None
    ratio_to_dataset_max: float | None
    is_top_unit: bool | None  # the unit is the strongest of its layer on this image
    top_unit: int | None
    top_label: str | None
    dead: bool  # the unit never activated: not during the optimization, not on the result
    history: list[float | None]  # the objective at every step
    path_similarity: float | None  # the trust panel's path similarity (None: not computed)
    path_flagged: bool | None  # processed less like the unit's exemplars than random images are


def image_records(rendering: Rendering, params: ActivationMaximizationParams) -> list[RenderedImage]:
    objective, resolved, labels = rendering.setup.objective, rendering.setup.resolved, rendering.labels
    measured, result = rendering.measured, rendering.result
    is_class = resolved["type"] == "class"
    groups = objective.groups()
    records = []
    panel = (rendering.trust or {}).get("path_similarity") or {}
    paths = panel.get("per_image") or [None] * objective.n
    for i in range(objective.n):
        unit = objective.image_units[i] if objective.has_units else None
        top = measured["top_unit"][i]
        activation = measured["activation"][i]
        best = rendering.dataset_max[groups[i]]
        records.append(
            RenderedImage(
                index=i,
                unit=unit,
                label=labels[unit] if unit is not None and is_class and unit < len(labels) else None,
                copy=groups[:i].count(groups[i]),
                png=f"image-{i:03d}.png",
                activation=_number(activation),
                robust_activation=_number(measured["robust_activation"][i]),
                dataset_max=_number(best),
                dataset_max_image=rendering.dataset_max_image[groups[i]],
                ratio_to_dataset_max=_number(activation / best) if best is not None and best > 0 else None,
                is_top_unit=measured["is_top_unit"][i],
                top_unit=top,
                top_label=labels[top] if top is not None and is_class and top < len(labels) else None,
                dead=result.dead[i] and not activation > 0,
                history=[_number(v, 5) for v in result.history[:, i].tolist()],
                path_similarity=_number(paths[i][0]) if paths[i] else None,
                path_flagged=paths[i][1] if paths[i] else None,
            )
        )
    return records


def result_document(
    rendering: Rendering,
    images: list[RenderedImage],
    params: ActivationMaximizationParams,
    *,
    model: str | None,
    device: str,
    model_load: ModelLoad | None = None,
) -> dict[str, Any]:
    setup, result = rendering.setup, rendering.result
    resolved, labels = setup.resolved, rendering.labels
    resolved_params = params.model_dump(mode="json")
    resolved_params["transforms"] = setup.transform_specs
    resolved_params["objective"] = {
        **resolved_params["objective"],
        "layer": resolved["layer"],
        "units": resolved["units"],
        "position": resolved["position"],
    }
    shape = list(rendering.images.shape)
    timing: dict[str, Any] = {
        "render_seconds": round(result.seconds, 4),
        "step_seconds": round(result.step_seconds, 6),
    }
    if model_load is not None:
        timing.update(load_seconds=round(model_load.seconds, 4), cache_hit=model_load.cache_hit)
    return {
        "kind": "activation_maximization",
        "model": model,
        "objective": {
            "type": resolved["type"],
            "layer": resolved["layer"],
            "layer_shape": resolved["layer_shape"],
            "units": resolved["units"],
            "labels": [labels[u] for u in resolved["units"] if u < len(labels)]
            if resolved["type"] == "class"
            else None,
            "position": resolved["position"],
            "vector": resolved["vector"],
        },
        "images": [asdict(image) for image in images],
        "images_shape": shape,
        "snapshots": {"steps": rendering.snapshot_steps, "shape": [len(rendering.snapshot_steps), *shape]}
        if rendering.snapshot_steps
        else None,
        "reference_dataset": params.reference_dataset,
        "reference_index": rendering.reference_index,
        "params": resolved_params,
        "seed": params.seed,
        "model_input": {
            "size": list(setup.to_input.size),
            "channels": setup.to_input.channels,
            "band_limit": setup.max_frequency,
        },
        "robust_samples": ROBUST_SAMPLES,
        "accentuation": _accentuation(rendering),
        "maco": {
            "spectrum": setup.spectrum_source or "1/f natural-image prior",
            "transparency": "alpha.npy: each pixel's |gradient| of the objective accumulated over the steps, "
            "divided by the image's largest (Fel et al. 2023); image-NNN-alpha.png apply it as alpha",
        }
        if params.parameterization == "maco"
        else None,
        "trust": _trust(rendering),
        "device": str(device),
        "timing": timing,
    }


def _trust(rendering: Rendering) -> dict[str, Any] | None:
    if rendering.trust is None:
        return None
    panel = {k: v for k, v in rendering.trust["path_similarity"].items() if k != "per_image"}
    return {**rendering.trust, "path_similarity": panel}


def _accentuation(rendering: Rendering) -> dict[str, Any] | None:
    if rendering.accentuation is None:
        return None
    numbers = {
        key: _numbers(value) if isinstance(value, list) else value for key, value in rendering.accentuation.items()
    }
    return {**numbers, "difference_scale": _numbers(rendering.differences()[1])}


def _numbers(values: list[Any]) -> list[Any]:
    return [_number(v) if isinstance(v, float) else v for v in values]


def summary(
    rendering: Rendering, images: list[RenderedImage], params: ActivationMaximizationParams, *, device: str
) -> dict[str, Any]:
    resolved = rendering.setup.resolved
    return {
        "objective": resolved["type"],
        "layer": resolved["layer"],
        "units": resolved["units"],
        "images": len(images),
        "size": params.size,
        "steps": params.steps,
        "activation": [image.activation for image in images],
        "ratio_to_dataset_max": [image.ratio_to_dataset_max for image in images] if params.reference_dataset else None,
        "is_top_unit": [image.is_top_unit for image in images],
        "render_seconds": round(rendering.result.seconds, 3),
        "device": str(device),
    }


def _number(value: float | None, digits: int = 6) -> float | None:
    """`value` to `digits` significant digits (result.json stays readable); None if not finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")
