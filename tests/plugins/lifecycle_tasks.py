import hashlib
import json
import time

from tests.plugins.lifecycle import LifecycleParams
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput


def artifact_payload(job_id: str, size: int) -> bytes:
    """Deterministic bytes a test can recompute from the job id."""
    blocks = []
    counter = 0
    while sum(map(len, blocks)) < size:
        blocks.append(hashlib.sha256(f"{job_id}:{counter}".encode()).digest())
        counter += 1
    return b"".join(blocks)[:size]


def run_lifecycle(ctx: JobContext, params: LifecycleParams) -> JobOutput:
    for step in range(params.steps):
        time.sleep(params.step_seconds)
        ctx.progress((step + 1) / params.steps, f"step {step + 1} of {params.steps}")
    if params.outcome == "fail":
        raise JobFailed("job-error", "Asked to fail", "outcome=fail")
    if params.outcome == "raise":
        raise ValueError("an unexpected bug")
    if params.outcome == "device_error":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    summary = {"steps": params.steps, "job_id": ctx.job_id}
    return JobOutput(
        summary=summary,
        artifacts=[
            ArtifactBlob("result.json", "application/json", json.dumps(summary).encode()),
            ArtifactBlob("payload.bin", "application/octet-stream", artifact_payload(ctx.job_id, params.artifact_bytes)),
        ],
    )


def run_layer_probe(ctx: JobContext, params) -> JobOutput:
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    return JobOutput(summary={"layer": params.layer, "units": params.units, "model_status": loaded.record["status"]})
