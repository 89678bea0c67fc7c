"""The job's shapes: what a client sends, what it gets back, and what a job kind is.

Defined once and used by both sides: the API validates and serializes with these models, the
worker reads the same records and validates `params` with the same per-kind model.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.plain_json import check_plain_json


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.canceled})


class DatasetUse(NamedTuple):
    loc: tuple[str | int, ...]  # where the id is, under `params`
    dataset_id: str
    kind: Literal["images", "table"]
    # Optional submit-time check of the dataset's record against the model's,
    # `check(dataset_record, model_record)`, raising ProblemError: what would fail the job once
    # it reads the data (a table without the model's variables) is a 422 instead.
    check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None


class JobKind(BaseModel):
    """A kind of job: its name, the model of its `params`, and the worker function that runs it.

    `handler` is an import path (`package.module:function`) so that the API can know a kind
    without importing the code that runs it (and so without importing torch).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    params_model: type[BaseModel]
    handler: str
    description: str = ""
    # Optional submit-time check against the model's catalog record, `check(params, record)`:
    # raises service.validation.InvalidRequest (e.g. via service.kinds.layers) for a bad layer or unit.
    check: Callable[[Any, dict[str, Any]], None] | None = None
    # Optional: the datasets the params name, so that the API refuses an unknown one (or one of
    # the wrong kind) at submit, instead of a worker failing the job later.
    datasets: Callable[[Any], list[DatasetUse]] | None = None
    # Optional: how long a job would take, `cost(params, model_record, dataset_records)` ->
    # service.kinds.cost.Estimate, with dataset_records keyed by the ids `datasets` names
    # (POST /v1/jobs/estimate answers it; torch-free, like `check`).
    cost: Callable[[Any, dict[str, Any], dict[str, dict[str, Any]]], Any] | None = None
    # A step of another job's fan-out (a shard, a merge): run by workers, never created, listed
    # or estimated through the API.
    internal: bool = False


def fanout_step(name: str, params_model: type[BaseModel], handler: str, description: str) -> JobKind:
    """The kind of a step of other jobs' fan-outs (service/jobstore/fanout.py)."""
    return JobKind(name=name, params_model=params_model, handler=handler, description=description, internal=True)


WebhookEvent = Literal["running", "succeeded", "failed", "canceled"]


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://", description="Where to POST.")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: ["succeeded", "failed", "canceled"],
        min_length=1,
        description="Statuses to be told about.",
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="The job kind; `GET /v1/kinds` lists them with their params.")
    model: str = Field(
        min_length=1,
        max_length=200,
        description="A model id from GET /v1/models (`shapes-cnn`, an upload's name), or a torchvision "
        "architecture `torchvision/<name>` with `?weights=default` (pretrained, the default) or "
        "`?weights=random&seed=N`, e.g. `torchvision/vgg16?weights=random&seed=0`.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific parameters, validated by the kind."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Client values, echoed back unchanged."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Ask for a shorter time limit than the service's "
        "`GLASSBOX_JOB_TIMEOUT_SECONDS` (a longer one is refused).",
    )
    @field_validator("kind", "model", "params", "metadata", "webhook", mode="before")
    @classmethod
    def _plain_json(cls, value: Any, info: ValidationInfo) -> Any:
        check_plain_json(value, info.field_name)
        return value

    webhook: WebhookSpec | None = Field(
        default=None,
        description="POST the job to `url` when it reaches one of `events`, signed the Standard "
        "Webhooks way (headers webhook-id, webhook-timestamp, webhook-signature: v1,<base64 "
        "HMAC-SHA256 of `id.timestamp.body`> with your GET /v1/webhook-secret); retried with backoff.",
    )


class Progress(BaseModel):
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""


class JobError(BaseModel):
    type: str = Field(
        description="Machine-readable, one of: `invalid-params` (params that could only be checked "
        "once the job ran, e.g. a dataset deleted since submit), `invalid-dataset` (a registered "
        "dataset's indexing found an entry it refuses: the detail names it), `invalid-rows` (table rows the "
        "model's features cannot encode), `limit-exceeded` (the work found larger than a job may "
        "do), `unknown-model` (the model was deleted since submit), `model-invalid` (the model "
        "cannot be loaded or fails on an input matching its manifest), `weights-unavailable` "
        "(pretrained weights not in the cache and no network), `dead-objective` (activation "
        "maximization: the objective's gradient is zero on random input), `objective-not-finite` "
        "(it became NaN or infinite), `timeout` (ran past its time limit), `worker-lost` (its "
        "worker died, after the retries), `device-error` (a sticky GPU error), `job-error` "
        "(anything else: the title names the exception). Plugin job kinds may add their own."
    )
    title: str
    detail: str = ""


class ArtifactRef(BaseModel):
    name: str
    content_type: str
    bytes: int
    sha256: str
    url: str


class JobResult(BaseModel):
    artifacts: list[ArtifactRef]
    summary: dict[str, Any] = Field(
        default_factory=dict,
        description="The kind's figures of the result, and `timings`: where the job's time went, in seconds: "
        "`queue_wait_seconds` (created to started, this try), `load_seconds` (the model and the datasets "
        "read), `compute_seconds`, `artifacts_seconds` (making the result files and storing them) and "
        "`worker_seconds` (the whole try on the worker: the stages plus what none of them covers). Jobs "
        "that a fan-out's last step finishes (index builds, atlases split into steps) have no `timings`.",
    )


class Job(BaseModel):
    id: str
    kind: str
    model: str
    status: JobStatus
    progress: Progress
    params: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(
        default=None, description="When a finished job and its artifacts are forgotten."
    )
    attempts: int = Field(description="How many times a worker has started this job.")
    timeout_seconds: int
    cancel_requested: bool = False
    error: JobError | None = None
    result: JobResult | None = None
    webhook: WebhookSpec | None = None


class JobPage(BaseModel):
    items: list[Job]
    next_page_token: str | None = Field(
        default=None, description="Pass as `page_token` for the next page; absent on the last."
    )


class KindInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
