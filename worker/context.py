"""What a job function sees: its parameters, progress reporting, cooperative stop checks.

A job function has the shape `def run(ctx: JobContext, params: ParamsModel) -> JobOutput`. It
calls `ctx.progress(...)` (or `ctx.check()`) between steps; that is where cancel, time limits
and worker shutdown take effect, by raising one of the exceptions below.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from service.jobstore import ArtifactBlob, JobRuns
from worker.stages import STAGES, StageClock

__all__ = [
    "ArtifactBlob",
    "JobCanceled",
    "JobContext",
    "JobFailed",
    "JobOutput",
    "JobTimedOut",
    "WorkerShuttingDown",
]


class JobCanceled(Exception):
    """The client canceled the job."""


class JobTimedOut(Exception):
    """The job ran past its time limit."""


class WorkerShuttingDown(Exception):
    """The worker was asked to stop; the job goes back to the queue."""


class JobFailed(Exception):
    """A failure the client should read: bad input found at run time, a dead objective, ..."""

    def __init__(self, type: str, title: str, detail: str = ""):
        super().__init__(f"{title}: {detail}" if detail else title)
        self.type = type
        self.title = title
        self.detail = detail


@dataclass
class JobOutput:
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[ArtifactBlob] = field(default_factory=list)
    # The job handed itself over to its fan-out (service/jobstore/fanout.py): its merge step
    # finishes it, not this worker.
    handed_over: bool = False


@dataclass(kw_only=True)
class JobContext:
    job_id: str
    tenant: str
    model: str
    worker: str
    runs: JobRuns
    deadline: float
    device: str
    shutting_down: threading.Event
    progress_interval: float
    # The worker's ModelLoader: `ctx.models.load(ctx.tenant, ctx.model)` (cached across jobs).
    models: Any = None
    # The worker's DatasetLoader: `ctx.datasets.images(ctx.tenant, id)` / `.table(...)`.
    datasets: Any = None
    # The blob store for files a job reads or writes beyond its artifacts (indexes, a fan-out's
    # steps' outputs): service.jobstore.ArtifactFiles (`.store` is the BlobStore).
    files: Any = None
    # Seconds per stage, for the `timings` of the job's summary (worker/stages.py).
    stages: StageClock = field(default_factory=StageClock)
    _last_sync: float = field(default=0.0, init=False, repr=False)

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Charge the block's time to stage `name` (`load`, `compute` or `artifacts`) in the
        job's timings; the worker already charges the job function to `compute` and model and
        dataset loads through `models` and `datasets` to `load`."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return self.stages.stage(name)

    def progress(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        """Report progress (throttled to one write per interval) and stop if asked to."""
        self._check_local()
        now = time.monotonic()
        if not force and now - self._last_sync < self.progress_interval:
            return
        self._last_sync = now
        if self.runs.report_progress(self.job_id, self.worker, fraction, message):
            raise JobCanceled()

    def check(self) -> None:
        """Stop if asked to; reads Redis at most once per interval."""
        self._check_local()
        now = time.monotonic()
        if now - self._last_sync < self.progress_interval:
            return
        self._last_sync = now
        if self.runs.cancel_requested(self.job_id, self.worker):
            raise JobCanceled()

    def _check_local(self) -> None:
        if self.shutting_down.is_set():
            raise WorkerShuttingDown()
        if time.time() > self.deadline:
            raise JobTimedOut()
