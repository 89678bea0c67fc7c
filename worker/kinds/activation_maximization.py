"""The `activation_maximization` job: adapts a job to worker/core/actmax and writes its
artifacts (images.npy, one PNG per image, grid.png, result.json, snapshots.npy)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.kinds.activation_maximization import ActivationMaximizationParams
from service.kinds.actmax_objective import resolve_objective
from service.validation import InvalidRequest
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput
from worker.core.actmax import (
    Compose,
    DeadObjective,
    Diversity,
    ImageParam,
    ModelInput,
    Objective,
    Regularizer,
    RenderResult,
    make_objective,
    make_param,
    make_regularizers,
    make_transforms,
    measure_images,
    render,
    unit_maxima,
)
from worker.core.actmax.render import NonFiniteObjective
from worker.core.imaging import png_bytes, prepare_images
from worker.datasets import ImageSet
from worker.kinds.actmax_figure import grid_png

DATASET_BATCH = 64
ROBUST_SAMPLES = 8


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return buffer.getvalue()


def _num(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _resolve(params: ActivationMaximizationParams, record: dict[str, Any]) -> dict[str, Any]:
    try:
        resolved = resolve_objective(params, record)
    except InvalidRequest as exc:
        raise JobFailed("invalid-params", "Invalid objective", exc.detail) from exc
    if resolved is None:
        raise JobFailed("model-invalid", "The model's layers are unknown", "inspection recorded no layers")
    if "image" not in (record.get("input") or {}):
        raise JobFailed("invalid-params", "Not an image model", f"{record['id']!r} has no image input contract")
    return resolved


def run(ctx: JobContext, params: ActivationMaximizationParams) -> JobOutput:
    ctx.progress(0.0, "loading the model", force=True)
    loaded, cache_hit, load_seconds = ctx.models.load(ctx.tenant, ctx.model)

    def on_step(step: int, steps: int, values: list[float] | None) -> None:
        fraction = 0.05 + 0.85 * step / steps
        if values is None:
            ctx.check()
            return
        mean = sum(values) / len(values)
        ctx.progress(fraction, f"step {step} of {steps}: activation {mean:.4g} (mean), {min(values):.4g} (min)")

    def dataset(dataset_id: str) -> ImageSet:
        ctx.progress(0.92, f"reading dataset {dataset_id}", force=True)
        return ctx.datasets.images(ctx.tenant, dataset_id)

    output = execute(
        loaded.module,
        loaded.record,
        params,
        device=ctx.device,
        model_name=ctx.model,
        on_step=on_step,
        on_phase=lambda fraction, message: ctx.progress(fraction, message, force=True),
        check=ctx.check,
        dataset=dataset,
    )
    output.document["timing"].update(load_seconds=round(load_seconds, 4), cache_hit=cache_hit)
    return output.job_output()


@dataclass
class Execution:
    document: dict[str, Any]  # result.json
    images: np.ndarray  # [N, 3, H, W] float32 in [0, 1]
    summary: dict[str, Any]
    artifacts: list[ArtifactBlob]  # all but result.json

    def job_output(self) -> JobOutput:
        result = ArtifactBlob("result.json", "application/json", json.dumps(self.document, indent=1).encode())
        return JobOutput(summary=self.summary, artifacts=[result, *self.artifacts])


@dataclass
class Setup:
    """The parts of one optimization, built from the job's params (see `render`)."""

    resolved: dict[str, Any]
    objective: Objective
    param: ImageParam
    to_input: ModelInput
    transforms: Compose
    transform_specs: list[dict[str, Any]]
    regularizers: list[Regularizer]
    diversity: Diversity | None
    generator: torch.Generator
    max_frequency: float | None

    def render(self, model: torch.nn.Module, params: ActivationMaximizationParams, **kwargs: Any) -> RenderResult:
        return render(
            model,
            self.objective,
            self.param,
            to_input=self.to_input,
            transforms=self.transforms,
            generator=self.generator,
            steps=kwargs.pop("steps", params.steps),
            lr=params.lr,
            optimizer=params.optimizer,
            regularizers=self.regularizers,
            diversity=self.diversity,
            thresholds=params.thresholds,
            **kwargs,
        )


def prepare(
    model: torch.nn.Module, record: dict[str, Any], params: ActivationMaximizationParams, *, device: str
) -> Setup:
    resolved = _resolve(params, record)
    generator = torch.Generator().manual_seed(params.seed)
    objective = make_objective(
        resolved["type"],
        resolved["layer"],
        resolved["units"],
        images_per_unit=params.images_per_unit,
        position=resolved["position"],
        vector=resolved["vector"],
        softmax_weight=params.objective.softmax_weight,
        softmax_start=params.objective.softmax_start,
    )
    to_input = ModelInput(record["input"], device)
    # An image rendered larger than the model's input is band-limited to what the model sees.
    ratio = max(to_input.size) / params.size
    max_frequency = 0.5 * ratio if ratio < 1 else None
    param = make_param(
        params.parameterization,
        objective.n,
        params.size,
        generator=generator,
        decorrelate=params.decorrelate,
        device=device,
        sd=params.init_sd,
        max_frequency=max_frequency,
    )
    transform_specs = params.transform_specs()
    return Setup(
        resolved=resolved,
        objective=objective,
        param=param,
        to_input=to_input,
        transforms=make_transforms(transform_specs),
        transform_specs=transform_specs,
        regularizers=make_regularizers(**params.regularizers.model_dump()),
        diversity=Diversity(params.diversity, objective.groups()) if params.diversity > 0 else None,
        generator=generator,
        max_frequency=max_frequency,
    )


def execute(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    *,
    device: str,
    model_name: str | None = None,
    on_step: Callable[[int, int, list[float] | None], None] | None = None,
    on_phase: Callable[[float, str], None] | None = None,
    check: Callable[[], None] | None = None,
    dataset: Callable[[str], ImageSet] | None = None,
) -> Execution:
    """The whole job without Redis: `model` loaded on `device`, `record` its catalog record
    (input contract, labels, layers); `dataset(id)` returns a reference dataset's images."""
    phase = on_phase or (lambda fraction, message: None)
    setup = prepare(model, record, params, device=device)
    resolved, objective, to_input = setup.resolved, setup.objective, setup.to_input
    transforms, transform_specs, generator = setup.transforms, setup.transform_specs, setup.generator
    contract = record["input"]
    labels = record.get("labels") or []

    phase(0.05, f"rendering {objective.n} images")
    try:
        result = setup.render(model, params, callback=on_step)
    except DeadObjective as exc:
        raise JobFailed(
            "dead-objective",
            "The objective is dead on random input",
            f"the gradient of {resolved['type']} {resolved['units'] or ''} at layer {resolved['layer']!r} "
            f"stayed exactly zero for the first {exc.steps} steps (e.g. a ReLU unit that never fires "
            "on the starting images): there is nothing to ascend. Pick another unit or layer "
            "(a pre-activation layer such as the convolution before the ReLU often works).",
        ) from exc
    except NonFiniteObjective as exc:
        raise JobFailed("objective-not-finite", "The objective became NaN or infinite", str(exc)) from exc

    phase(0.9, "measuring the images")
    measured = measure_images(
        model,
        objective,
        result.images,
        to_input=to_input,
        transforms=transforms,
        generator=generator,
        robust_samples=ROBUST_SAMPLES,
    )
    dataset_max: list[float | None] = [None] * len(objective.unit_ids)
    dataset_where: list[str | None] = [None] * len(objective.unit_ids)
    if params.reference_dataset:
        if dataset is None:
            raise JobFailed("invalid-params", "No datasets here", "reference_dataset needs a dataset loader")
        image_set = dataset(params.reference_dataset)
        if not image_set.images:
            raise JobFailed("invalid-params", "The reference dataset is empty", params.reference_dataset)

        def batches():
            for start in range(0, len(image_set.images), DATASET_BATCH):
                if check is not None:
                    check()
                yield prepare_images(image_set.images[start : start + DATASET_BATCH], contract, device)

        maxima, where = unit_maxima(model, objective, batches())
        dataset_max = maxima
        dataset_where = [image_set.names[i] for i in where]

    groups = objective.groups()
    images_np = result.images.numpy().astype(np.float32)
    items = []
    artifacts: list[ArtifactBlob] = []
    for i in range(objective.n):
        unit = objective.image_units[i] if objective.has_units else None
        label = labels[unit] if unit is not None and resolved["type"] == "class" and unit < len(labels) else None
        top = measured["top_unit"][i]
        activation = measured["activation"][i]
        best = dataset_max[groups[i]]
        name = f"image-{i:03d}.png"
        items.append(
            {
                "index": i,
                "unit": unit,
                "label": label,
                "copy": groups[:i].count(groups[i]),
                "png": name,
                "activation": _num(activation),
                "robust_activation": _num(measured["robust_activation"][i]),
                "dataset_max": _num(best),
                "dataset_max_image": dataset_where[groups[i]],
                "ratio_to_dataset_max": _num(activation / best) if best is not None and best > 0 else None,
                "is_top_unit": measured["is_top_unit"][i],
                "top_unit": top,
                "top_label": labels[top]
                if top is not None and resolved["type"] == "class" and top < len(labels)
                else None,
                "dead": result.dead[i] and not activation > 0,
                "history": [_num(v, 5) for v in result.history[:, i].tolist()],
            }
        )
        artifacts.append(ArtifactBlob(name, "image/png", png_bytes(images_np[i])))

    grid = grid_png(images_np, items, groups, resolved, params, model_name or record.get("id"))
    artifacts.insert(0, ArtifactBlob("grid.png", "image/png", grid))
    artifacts.insert(0, ArtifactBlob("images.npy", "application/octet-stream", _npy(images_np)))
    if result.snapshots:
        steps = sorted(result.snapshots)
        stacked = np.stack([result.snapshots[s].numpy() for s in steps])
        artifacts.append(ArtifactBlob("snapshots.npy", "application/octet-stream", _npy(stacked)))

    resolved_params = params.model_dump(mode="json")
    resolved_params["transforms"] = transform_specs
    resolved_params["objective"] = {
        **resolved_params["objective"],
        "layer": resolved["layer"],
        "units": resolved["units"],
        "position": resolved["position"],
    }
    document = {
        "kind": "activation_maximization",
        "model": model_name or record.get("id"),
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
        "images": items,
        "images_shape": list(images_np.shape),
        "snapshots": {"steps": sorted(result.snapshots), "shape": [len(result.snapshots), *images_np.shape]}
        if result.snapshots
        else None,
        "reference_dataset": params.reference_dataset,
        "params": resolved_params,
        "seed": params.seed,
        "model_input": {"size": list(to_input.size), "channels": to_input.channels, "band_limit": setup.max_frequency},
        "robust_samples": ROBUST_SAMPLES,
        "device": str(device),
        "timing": {
            "render_seconds": round(result.seconds, 4),
            "step_seconds": round(result.step_seconds, 6),
        },
    }
    summary = {
        "objective": resolved["type"],
        "layer": resolved["layer"],
        "units": resolved["units"],
        "images": objective.n,
        "size": params.size,
        "steps": params.steps,
        "activation": [item["activation"] for item in items],
        "ratio_to_dataset_max": [item["ratio_to_dataset_max"] for item in items] if params.reference_dataset else None,
        "is_top_unit": [item["is_top_unit"] for item in items],
        "render_seconds": round(result.seconds, 3),
        "device": str(device),
    }
    return Execution(document=document, images=images_np, summary=summary, artifacts=artifacts)


__all__ = ["Execution", "Setup", "execute", "prepare", "run"]
