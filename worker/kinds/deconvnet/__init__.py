"""The `deconvnet` job (handler `worker.kinds.deconvnet:run`): the images that excite a layer's
channels most, and each strongest activation projected back to pixels (Zeiler & Fergus).

The data path, top to bottom: `compute` loads the model and images and runs the PyTorch core
(worker/core/deconvnet.py) into a `Projections`; `figures` draws the PNGs from it; `report`
writes result.json and the summary from it. Artifacts, in this order: reconstructions.npy,
projection-NNN.png and patch-NNN.png per neuron, grid.png, result.json, and with
`randomization_check` randomized_reconstructions.npy (the same projections, weights randomized).
"""

from __future__ import annotations

from service.kinds.deconvnet import DeconvnetParams
from worker.artifacts import json_artifact, npy_artifact
from worker.context import JobContext, JobOutput
from worker.kinds.deconvnet import report
from worker.kinds.deconvnet.compute import project_neurons
from worker.kinds.deconvnet.figures import figure_artifacts

__all__ = ["run"]


def run(ctx: JobContext, params: DeconvnetParams) -> JobOutput:
    projections = project_neurons(ctx, params)  # the model and dataset loads are charged to `load`
    with ctx.stage("artifacts"):
        artifacts = [
            npy_artifact("reconstructions.npy", projections.reconstructions),
            *figure_artifacts(projections, params, ctx.model),
            json_artifact("result.json", report.result_document(projections, params, ctx.model)),
        ]
        if projections.randomized is not None:
            artifacts.append(npy_artifact("randomized_reconstructions.npy", projections.randomized))
    return JobOutput(summary=report.summary(projections, params), artifacts=artifacts)
