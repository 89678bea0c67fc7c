"""The job record as stored in its Redis hash, and its one codec.

Redis hashes hold strings; this module is the only place that knows how each field is written
(epoch floats, JSON documents, '1' for a flag), so the rest of the code reads a typed
`JobRecord` and the API serializes the `Job` built from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.jobspec import ArtifactRef, Job, JobError, JobResult, JobStatus, Progress


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _epoch(value: str) -> float | None:
    return float(value) if value else None


def _datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


@dataclass
class JobRecord:
    id: str
    tenant: str
    kind: str
    model: str
    status: JobStatus
    params: dict[str, Any]
    metadata: dict[str, Any]
    created_at: float
    timeout_seconds: int
    fraction: float = 0.0
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    attempts: int = 0
    worker: str = ""
    cancel_requested: bool = False
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None
    # Where the artifacts are in the blob store ('' for a job of before the blob store, whose
    # artifacts are Redis keys until they expire).
    artifacts_prefix: str = ""
    # Fan-out: a step's parent job; a parent's steps {"shards": [ids], "merge": id} and how many
    # of them are done; a merge step's shards (what it waits for on RQ).
    parent: str = ""
    fanout: dict[str, Any] | None = None
    steps_done: int = 0
    after: list[str] = field(default_factory=list)
    # The API's serialized `Job`, kept with a cached record (see reader.py); never stored.
    cached_json: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_redis(cls, job_id: str, raw: dict[Any, Any]) -> JobRecord:
        fields = {_text(k): _text(v) for k, v in raw.items()}

        def document(name: str) -> dict[str, Any] | None:
            return json.loads(fields[name]) if fields.get(name) else None

        return cls(
            id=job_id,
            tenant=fields.get("tenant", ""),
            kind=fields["kind"],
            model=fields["model"],
            status=JobStatus(fields["status"]),
            params=json.loads(fields["params"]),
            metadata=json.loads(fields["metadata"]),
            created_at=float(fields["created_at"]),
            timeout_seconds=int(fields["timeout_seconds"]),
            fraction=float(fields.get("fraction") or 0.0),
            message=fields.get("message", ""),
            started_at=_epoch(fields.get("started_at", "")),
            finished_at=_epoch(fields.get("finished_at", "")),
            expires_at=_epoch(fields.get("expires_at", "")),
            attempts=int(fields.get("attempts") or 0),
            worker=fields.get("worker", ""),
            cancel_requested=fields.get("cancel_requested") == "1",
            error=document("error"),
            result=document("result"),
            webhook=document("webhook"),
            artifacts_prefix=fields.get("artifacts_prefix", ""),
            parent=fields.get("parent", ""),
            fanout=document("fanout"),
            steps_done=int(fields.get("steps_done") or 0),
            after=json.loads(fields["after"]) if fields.get("after") else [],
        )

    def to_redis(self) -> dict[str, str]:
        """The fields a new record is created with (transitions change the others in Lua)."""
        fields = {
            "tenant": self.tenant,
            "kind": self.kind,
            "model": self.model,
            "params": json.dumps(self.params),
            "metadata": json.dumps(self.metadata),
            "status": self.status.value,
            "fraction": repr(self.fraction),
            "message": self.message,
            "created_at": repr(self.created_at),
            "attempts": str(self.attempts),
            "timeout_seconds": str(self.timeout_seconds),
        }
        if self.webhook is not None:
            fields["webhook"] = json.dumps(self.webhook)
        if self.parent:
            fields["parent"] = self.parent
        if self.after:
            fields["after"] = json.dumps(self.after)
        return fields

    @property
    def artifacts(self) -> list[ArtifactRef]:
        return [ArtifactRef.model_validate(a) for a in (self.result or {}).get("artifacts", [])]

    def artifact(self, name: str) -> ArtifactRef | None:
        for entry in (self.result or {}).get("artifacts", []):
            if entry.get("name") == name:
                return ArtifactRef.model_validate(entry)
        return None

    def artifact_key(self, name: str) -> str | None:
        """The artifact's blob-store key; None for artifacts of before the blob store."""
        return f"{self.artifacts_prefix}/{name}" if self.artifacts_prefix else None

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_job(self) -> Job:
        return Job(
            id=self.id,
            kind=self.kind,
            model=self.model,
            status=self.status,
            progress=Progress(fraction=self.fraction, message=self.message),
            params=self.params,
            metadata=self.metadata,
            created_at=_datetime(self.created_at),
            started_at=_datetime(self.started_at),
            finished_at=_datetime(self.finished_at),
            expires_at=_datetime(self.expires_at),
            attempts=self.attempts,
            timeout_seconds=self.timeout_seconds,
            cancel_requested=self.cancel_requested and not self.status.is_terminal,
            error=JobError.model_validate(self.error) if self.error else None,
            result=JobResult.model_validate(self.result) if self.result else None,
            webhook=self.webhook,
        )

    def job_json(self) -> bytes:
        return self.to_job().model_dump_json().encode()
