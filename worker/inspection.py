"""The `model_inspection` job: load a model, run it once, record its layers."""

from __future__ import annotations

from service.kinds.model_inspection import ModelInspectionParams
from worker.artifacts import json_artifact
from worker.context import JobContext, JobFailed, JobOutput


def run_model_inspection(ctx: JobContext, params: ModelInspectionParams) -> JobOutput:
    ctx.progress(0.05, "loading the model", force=True)
    try:
        loaded, cache_hit, seconds = ctx.models.load(ctx.tenant, ctx.model)
    except JobFailed as exc:
        _mark_upload_failed(ctx, f"{exc.title}: {exc.detail}" if exc.detail else exc.title)
        raise
    record = loaded.record
    ctx.progress(0.9, "recording layers")
    summary = {
        "model": ctx.model,
        "status": record.get("status"),
        "layers": len(record.get("layers") or []),
        "parameters": record.get("parameters"),
        "cache_hit": cache_hit,
        "load_seconds": round(seconds, 4),
        "device": ctx.device,
    }
    document = {**summary, "input": record.get("input"), "layer_list": record.get("layers")}
    return JobOutput(summary=summary, artifacts=[json_artifact("result.json", document)])


def _mark_upload_failed(ctx: JobContext, reason: str) -> None:
    catalog = ctx.models.catalog
    found = catalog.find(ctx.tenant, ctx.model.partition("?")[0])
    if found is None:
        return
    scope, record = found
    if record.get("source") == "upload":
        catalog.put(scope, record["id"], {**record, "status": "failed", "error": reason[:2000]})
