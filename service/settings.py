"""Configuration, read from `GLASSBOX_*` environment variables.

One `Settings` object is built at process start and passed explicitly to whatever needs it
(the app factory, the worker, the supervisor); nothing reads the environment behind its back.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+)$"
# The catalog scope of the built-in models and datasets, which every tenant reads: no tenant may
# be called that, or its uploads would be everyone's (and it could delete the built-ins).
BUILTIN_SCOPE = "builtin"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GLASSBOX_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Redis URL. Empty: `glassbox up` starts a private redis-server; "
        "`glassbox api` and `glassbox worker` require it.",
    )
    namespace: str = Field(
        default="glassbox",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key and of the RQ queue name, so that several "
        "deployments can share one Redis.",
    )
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Comma-separated `tenant:key` pairs (`builtin` is reserved). Empty: open local "
        "mode (one tenant, `local`, no authentication).",
    )
    result_ttl_seconds: int = Field(
        default=86400, ge=60, description="How long a finished job and its artifacts are kept."
    )
    job_timeout_seconds: int = Field(
        default=3600,
        ge=1,
        description="Longest a job may run; a job may ask for less with `timeout_seconds`.",
    )
    device: str = Field(default="auto", pattern=DEVICE_PATTERN, description="`auto`, `cpu`, `cuda` or `cuda:N`.")
    max_upload_bytes: int = Field(
        default=20 * 1024**3,
        ge=1024,
        description="Largest model or dataset upload (a multipart body; the files are spooled to the "
        "temporary folder, then streamed to the blob store).",
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body (job create with inline images included).",
    )
    max_concurrent_jobs_per_tenant: int = Field(
        default=4,
        ge=0,
        description="Jobs of one tenant queued on workers or running at once; more wait in "
        "the tenant's own queue (they are not refused). 0: no limit.",
    )
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, description="How often a worker says it is alive.")
    worker_lost_after_seconds: float = Field(
        default=20.0,
        gt=0,
        description="A running job whose worker has been silent this long is taken as lost.",
    )
    worker_lost_retries: int = Field(
        default=1,
        ge=0,
        description="How many times a job whose worker died is queued again before it fails with `worker-lost`.",
    )
    step_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="How many times a step of a fanned-out job (an index shard, an atlas chunk) that raised an "
        "unexpected error is queued again, for any worker, before the whole job fails.",
    )
    reaper_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often lost and stalled jobs are looked for."
    )
    progress_interval_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Shortest time between two progress updates of one job (throttling).",
    )
    model_cache_bytes: int = Field(
        default=4 * 1024**3,
        ge=0,
        description="Memory a worker keeps loaded models in (parameters and buffers), least "
        "recently used evicted first.",
    )
    webhook_secret: str = Field(
        default="",
        description="Master secret of webhook signatures (each tenant's signing secret is derived "
        "from it; GET /v1/webhook-secret shows a tenant its own). Empty: webhooks are off.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts webhooks may call (`hooks.example.com`, `*.example.com`, "
        "`10.0.0.5`). Empty: any host whose addresses are all public; internal addresses are only "
        "reached when listed here.",
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="Tries of one delivery.")
    webhook_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="Backoff before the second try; doubles with each try."
    )
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, description="Time a receiver has to answer.")
    actmax_max_size: int = Field(
        default=512, ge=8, description="Activation maximization: largest rendered image side, px."
    )
    actmax_max_steps: int = Field(default=4096, ge=1, description="Activation maximization: most optimization steps.")
    actmax_max_units: int = Field(default=64, ge=1, description="Activation maximization: most units in one job.")
    actmax_max_images_per_unit: int = Field(
        default=16, ge=1, description="Activation maximization: most images per unit."
    )
    actmax_max_images: int = Field(
        default=128, ge=1, description="Activation maximization: most images in one job (units x images_per_unit)."
    )
    plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Python modules that add job kinds and models (see "
        "service/plugins.py). Loaded by the API and the worker alike.",
    )
    data_dir: str = Field(
        default=".glassbox",
        description="Where `glassbox up` keeps the private redis-server's data, and workers their "
        "torchvision catalog cache.",
    )
    blob_url: str = Field(
        default="",
        description="Where uploads, datasets and artifacts are stored: `file:///absolute/path` (a "
        "directory, local or on a volume several hosts share) or `s3://bucket/prefix` (any "
        "S3-compatible store; credentials and region from the standard AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION variables). "
        "Empty: `<data_dir>/blobs`.",
    )
    artifact_flush_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="With a `file` blob store: a job's artifacts are published when it finishes and "
        "fsynced to disk within this many seconds, many jobs' files at once (a crash of the machine, not "
        "of a process, can lose that window, as Redis's `appendfsync everysec` does for job records; a "
        "download of a file cut short by one is refused, and the job gives the same result run again "
        "with its seed). 0: fsynced before the job finishes (each job then waits for the disk).",
    )
    s3_endpoint_url: str = Field(
        default="",
        description="Endpoint of a non-AWS S3 store (MinIO, SeaweedFS, Ceph RGW, R2), e.g. "
        "`http://seaweedfs:8333`. Empty: AWS S3 of the configured region.",
    )
    s3_allow_http: bool = Field(default=False, description="Allow a plain `http://` S3 endpoint (unencrypted traffic).")
    presign_downloads: bool = Field(
        default=False,
        description="With an `s3` blob store: answer file downloads with a redirect to a "
        "short-lived presigned URL of the object instead of streaming it through the API.",
    )
    presign_expires_seconds: int = Field(
        default=300, ge=1, le=7 * 24 * 3600, description="How long a presigned download URL is valid."
    )
    dataset_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated absolute paths under which datasets may be registered in place "
        "(`POST /v1/datasets` with a `file:///...` source). Empty: none (file sources are refused).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            tenant, sep, key = pair.partition(":")
            if not sep or not tenant.strip() or not key.strip():
                raise ValueError(f"expected `tenant:key` pairs separated by commas, got {pair!r}")
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tenant.strip()):
                raise ValueError(f"tenant names use letters, digits, `_`, `.` and `-`: {tenant!r}")
            if tenant.strip() == BUILTIN_SCOPE:
                raise ValueError(f"the tenant name {BUILTIN_SCOPE!r} is reserved for the built-in models and datasets")
            if key.strip() in keys:
                raise ValueError("the same API key is given to two tenants")
            keys[key.strip()] = tenant.strip()
        return keys

    @field_validator("plugins", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _parse_plugins(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("dataset_roots", mode="before")
    @classmethod
    def _parse_dataset_roots(cls, value: object) -> object:
        roots = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        for root in roots if isinstance(roots, list) else []:
            if not isinstance(root, str) or not root.startswith("/"):
                raise ValueError(f"dataset roots are absolute paths: {root!r}")
        return roots

    @field_validator("blob_url")
    @classmethod
    def _check_blob_url(cls, value: str) -> str:
        if value:
            from service.storage.config import parse_blob_url

            parse_blob_url(value)
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @cached_property
    def queue_name(self) -> str:
        return f"{self.namespace}-jobs"


OPEN_MODE_TENANT = "local"
