import hashlib
import json
import time
from pathlib import Path

from service.jobspec import JobStatus
from service.jobstore.fanout import FANOUT_OWNER, Step
from tests.plugins.lifecycle import FanOutParams, FanOutStepParams, LifecycleParams
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput


def artifact_payload(job_id: str, size: int) -> bytes:
    """Deterministic bytes a test can recompute from the job id."""
    blocks = [hashlib.sha256(f"{job_id}:{counter}".encode()).digest() for counter in range(-(-size // 32))]
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
            ArtifactBlob(
                "payload.bin", "application/octet-stream", artifact_payload(ctx.job_id, params.artifact_bytes)
            ),
        ],
    )


def run_layer_probe(ctx: JobContext, params) -> JobOutput:
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    return JobOutput(summary={"layer": params.layer, "units": params.units, "model_status": loaded.record["status"]})


def run_fanout(ctx: JobContext, params: FanOutParams) -> JobOutput:
    steps = [
        Step("test-fanout-step", {"n": n, "raises": params.raises if n == params.flaky else 0, "counts": params.counts})
        for n in range(params.steps)
    ]
    ctx.runs.fanout.hand_over(
        ctx.runs.store.record(ctx.job_id), ctx.worker, steps, Step("test-fanout-merge", params.model_dump())
    )
    return JobOutput(handed_over=True)


def run_fanout_step(ctx: JobContext, params: FanOutStepParams) -> JobOutput:
    if params.raises:
        count = Path(params.counts) / f"step-{params.n}"
        done = int(count.read_text()) if count.exists() else 0
        count.write_text(str(done + 1))
        if done < params.raises:
            raise RuntimeError(f"flaky step {params.n}, try {done + 1}")
    return JobOutput(summary={"n": params.n})


def run_fanout_merge(ctx: JobContext, params: FanOutParams) -> JobOutput:
    """Finishes the parent with each step's status as the merge saw it."""
    parent = ctx.runs.store.record(ctx.runs.store.record(ctx.job_id).parent)
    if parent is None or parent.status != JobStatus.running:
        return JobOutput(summary={"skipped": True})
    seen = [ctx.runs.store.record(step).status.value for step in parent.fanout["shards"]]
    ctx.runs.finish(parent.id, FANOUT_OWNER, JobStatus.succeeded, summary={"steps_seen_by_merge": seen})
    return JobOutput(summary={"merged": len(seen)})
