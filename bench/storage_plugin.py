"""A job kind for bench.storage only (loaded with GLASSBOX_PLUGINS=bench.storage_plugin): it
does no work but write its artifacts, `files` files of `file_bytes` bytes each and a small
result.json, so that a job's cost is the artifacts' path. Its bytes are distinct per job and
made at memory speed (tests.plugins.lifecycle's payload is built in time quadratic in its size:
a 1 MiB artifact takes its worker tens of seconds there)."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from service.jobspec import JobKind

KIND = "bench-artifacts"
MODEL = "bench-storage-model"


class ArtifactParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: int = Field(default=1, ge=0, le=64)
    file_bytes: int = Field(default=65536, ge=0, le=64 * 1024 * 1024)


def payload(job_id: str, index: int, size: int) -> bytes:
    block = b"".join(hashlib.sha256(f"{job_id}:{index}:{i}".encode()).digest() for i in range(128))  # 4 KiB
    return (block * (size // len(block) + 1))[:size]


def run_artifacts(ctx, params: ArtifactParams):
    from worker.context import ArtifactBlob, JobOutput

    blobs = [ArtifactBlob("result.json", "application/json", b'{"files": %d}' % params.files)]
    blobs += [
        ArtifactBlob(f"payload-{i}.bin", "application/octet-stream", payload(ctx.job_id, i, params.file_bytes))
        for i in range(params.files)
    ]
    return JobOutput(summary={"files": params.files}, artifacts=blobs)


MODELS = [{"id": MODEL, "kind": "test", "description": "bench.storage: a placeholder the artifacts kind names"}]

JOB_KINDS = [
    JobKind(
        name=KIND,
        params_model=ArtifactParams,
        handler="bench.storage_plugin:run_artifacts",
        description="Benchmark-only: writes artifacts of a given size.",
    )
]
