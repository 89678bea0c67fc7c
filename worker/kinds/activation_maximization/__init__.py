"""The `activation_maximization` job (handler `worker.kinds.activation_maximization:run`):
images rendered from noise to excite a unit, a channel, a layer or a direction as much as they
can (Olah et al., "Feature Visualization"; the core is worker/core/actmax).

The data path, top to bottom: `compute` builds and runs the optimization into a `Rendering`;
`report` reads one record per image off it, then result.json and the summary; `figures` draws
grid.png and the image PNGs, `extras` the artifacts of accentuation and MACO. Artifacts, in
this order: result.json, images.npy, grid.png, image-NNN.png, snapshots.npy (when `thresholds`
asked for snapshots); with `init`: seed.png, accentuation.png, difference-NNN.png; with maco:
alpha.npy, image-NNN-alpha.png.

`execute` is the whole job without Redis (a loaded model and its record in, artifacts out),
for tests and notebooks; `run` is the worker's handler around it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.artifacts import json_artifact, npy_artifact
from worker.context import ArtifactBlob, JobContext, JobOutput
from worker.datasets import ImageSet
from worker.indexes import IndexAccess
from worker.kinds.activation_maximization import report
from worker.kinds.activation_maximization.compute import DATASET_BATCH, Hooks, Rendering, render_images
from worker.kinds.activation_maximization.extras import accentuation_artifacts, transparency_artifacts
from worker.kinds.activation_maximization.figures import grid_artifact, image_artifacts
from worker.kinds.activation_maximization.report import ModelLoad
from worker.kinds.activation_maximization.spectrum import cached_spectrum

__all__ = ["Execution", "execute", "run"]


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

    def reference_index(dataset_id: str, layer: str, k: int):
        access = IndexAccess(ctx, loaded.record, dataset_id)
        found = access.find(layer, k)
        if found is not None:
            return found
        images = dataset(dataset_id)
        return access.build_here(loaded.module, images, layer, k, DATASET_BATCH,
                                 progress=lambda f: ctx.progress(0.92 + 0.06 * f, f"indexing {dataset_id}: {f:.0%}"))  # fmt: skip

    return execute(
        loaded.module,
        loaded.record,
        params,
        device=ctx.device,
        model_name=ctx.model,
        model_load=ModelLoad(load_seconds, cache_hit),
        hooks=Hooks(
            on_step=on_step,
            on_phase=lambda fraction, message: ctx.progress(fraction, message, force=True),
            check=ctx.check,
            dataset=dataset,
            reference_index=reference_index,
            spectrum=lambda dataset_id, size: cached_spectrum(ctx, dataset_id, size, decorrelate=params.decorrelate),
        ),
        stage=ctx.stage,
    ).job_output()


@dataclass
class Execution:
    document: dict[str, Any]  # result.json
    summary: dict[str, Any]
    artifacts: list[ArtifactBlob]  # every artifact, result.json first

    def job_output(self) -> JobOutput:
        return JobOutput(summary=self.summary, artifacts=self.artifacts)


def execute(
    model: torch.nn.Module,
    record: dict[str, Any],
    params: ActivationMaximizationParams,
    *,
    device: str,
    model_name: str | None = None,
    model_load: ModelLoad | None = None,
    hooks: Hooks | None = None,
    stage: Callable[[str], AbstractContextManager[Any]] = lambda name: nullcontext(),
) -> Execution:
    """The whole job without Redis: `model` loaded on `device`, `record` its catalog record
    (input contract, labels, layers). `stage` (the job's `ctx.stage`) times the artifacts."""
    rendering = render_images(model, record, params, device=device, hooks=hooks)
    with stage("artifacts"):
        return _execution(rendering, params, name=model_name or record.get("id"), device=device, model_load=model_load)


def _execution(
    rendering: Rendering,
    params: ActivationMaximizationParams,
    *,
    name: str | None,
    device: str,
    model_load: ModelLoad | None,
) -> Execution:
    """result.json, the summary and the artifacts of a rendering."""
    images = report.image_records(rendering, params)
    document = report.result_document(rendering, images, params, model=name, device=device, model_load=model_load)
    artifacts = [
        json_artifact("result.json", document),
        npy_artifact("images.npy", rendering.images),
        grid_artifact(rendering, images, params, name),
        *image_artifacts(rendering, images),
    ]
    if rendering.snapshots is not None:
        artifacts.append(npy_artifact("snapshots.npy", rendering.snapshots))
    if rendering.accentuation is not None:
        artifacts.extend(accentuation_artifacts(rendering, images, name))
    if rendering.transparency is not None:
        artifacts.extend(transparency_artifacts(rendering, images))
    return Execution(
        document=document, summary=report.summary(rendering, images, params, device=device), artifacts=artifacts
    )
