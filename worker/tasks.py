"""The RQ entry point: adapts a job record to a job function and records the outcome."""

from __future__ import annotations

import logging
import time

import redis
from rq import Retry
from rq.timeouts import JobTimeoutException

from service.jobspec import JobError, JobStatus
from service.jobstore import OwnershipLost
from service.jobstore.runs import RequeueOutcome
from service.kinds.plan import validate_params
from service.validation import InvalidRequest
from worker.context import JobCanceled, JobContext, JobFailed, JobTimedOut, WorkerShuttingDown
from worker.device import is_unrecoverable_device_error
from worker.runtime import current_runtime
from worker.stages import ChargedCalls, StageClock, timings

log = logging.getLogger("glassbox.worker")

# The process exits with this after a sticky CUDA error, for its supervisor to restart it.
EXIT_DEVICE_ERROR = 3
# How long a worker waits for Redis to come back to put an interrupted job back in the queue.
REDIS_OUTAGE_PATIENCE_SECONDS = 300.0


def run_job(job_id: str) -> Retry | None:
    """RQ's job function. Returns an RQ `Retry` for a fan-out step that raised and has tries
    left: RQ queues it again itself, and the steps that wait for it keep waiting."""
    try:
        return _run_job(job_id)
    except redis.RedisError as exc:
        # Redis went away mid-job: nothing can be recorded now. Wait for it, then put the job
        # back in the queue (this try is not counted), so it never stays `running` for ever.
        log.warning("job %s interrupted by a Redis outage (%s); queuing it again once Redis is back", job_id, exc)
        _requeue_when_redis_returns(current_runtime(), job_id)
        return None


def _requeue_when_redis_returns(runtime, job_id: str) -> None:
    deadline = time.monotonic() + REDIS_OUTAGE_PATIENCE_SECONDS
    while time.monotonic() < deadline:
        try:
            runtime.runs.requeue(job_id, runtime.name, "job storage was unavailable", refund_attempt=True)
            return
        except redis.RedisError:
            time.sleep(1.0)
    # Still no Redis: the reaper of any process settles the job once this worker is gone.


def _run_job(job_id: str) -> Retry | None:
    runtime = current_runtime()
    runs = runtime.runs
    record = runs.start(job_id, runtime.name)
    if record is None:
        log.info("job %s is no longer queued; skipped", job_id)
        return

    def fail(type: str, title: str, detail: str = "") -> None:
        runs.finish(job_id, runtime.name, JobStatus.failed, error=JobError(type=type, title=title, detail=detail))

    started = time.perf_counter()
    clock = StageClock()
    ctx = JobContext(
        job_id=job_id,
        tenant=record.tenant,
        model=record.model,
        worker=runtime.name,
        runs=runs,
        deadline=(record.started_at or time.time()) + record.timeout_seconds,
        device=runtime.device,
        shutting_down=runtime.shutting_down,
        progress_interval=runtime.settings.progress_interval_seconds,
        models=_charged(runtime.models, clock, ("load",)),
        datasets=_charged(runtime.datasets, clock, ("images", "table", "table_view", "index")),
        files=runtime.artifacts,
        stages=clock,
    )
    try:
        kind = runtime.kinds.get(record.kind)
        if kind is None:
            raise JobFailed("invalid-params", "This worker does not run this job kind", record.kind)
        params = validate_params(kind, record.params, runtime.settings)
        with clock.stage("compute"):
            output = runtime.handler(kind)(ctx, params)
        if output.handed_over:
            log.info("job %s handed over to its fan-out in %.3f s", job_id, time.perf_counter() - started)
            return
        with clock.stage("artifacts"):
            prefix, refs = runtime.artifacts.write(job_id, output.artifacts)
        queue_wait = record.started_at - record.created_at if record.started_at and record.created_at else None
        summary = {
            **output.summary,
            "timings": timings(clock, queue_wait=queue_wait, worker_seconds=time.perf_counter() - started),
        }
        outcome = runs.finish(
            job_id, runtime.name, JobStatus.succeeded, summary=summary, artifacts=refs, artifacts_prefix=prefix
        )
        if outcome != "finished":
            runtime.artifacts.discard(prefix)
        log.info("job %s %s in %.3f s", job_id, outcome, time.perf_counter() - started)
    except OwnershipLost:
        log.warning("job %s was taken from this worker (reaped or deleted); its result is dropped", job_id)
    except JobCanceled:
        runs.finish(job_id, runtime.name, JobStatus.canceled)
    except (JobTimedOut, JobTimeoutException):
        fail("timeout", "The job ran past its time limit", f"limit {record.timeout_seconds} s")
    except WorkerShuttingDown:
        # Back to the queue for another worker; this try does not count against the job.
        runs.requeue(job_id, runtime.name, "the worker shut down", refund_attempt=True)
    except JobFailed as exc:
        fail(exc.type, exc.title, exc.detail)
    except InvalidRequest as exc:
        # A check of the job kind's plan that only the loaded model could answer.
        fail("invalid-params", exc.title, exc.detail)
    except redis.RedisError:
        raise  # handled by run_job: the job goes back to the queue once Redis returns
    except Exception as exc:
        if is_unrecoverable_device_error(exc):
            log.critical("unrecoverable device error in job %s; the worker will exit: %s", job_id, exc)
            fail("device-error", "The GPU failed while running this job", str(exc)[:2000])
            runtime.exit_code = EXIT_DEVICE_ERROR
        elif record.parent and _requeued_for_retry(runtime, record, exc):
            return Retry(max=runtime.settings.step_retries)
        else:
            log.exception("job %s failed", job_id)
            fail("job-error", f"{type(exc).__name__} while running the job", str(exc)[:2000])


def _charged(loader, clock: StageClock, methods: tuple[str, ...]):
    """The worker's loader with `methods` charged to the job's `load` stage (None stays None)."""
    return None if loader is None else ChargedCalls(loader, clock, "load", methods)


def _requeued_for_retry(runtime, record, exc: Exception) -> bool:
    """A step of a fan-out that raised unexpectedly is tried again while it has tries left
    (settings.step_retries; its record's attempts, which a lost worker's re-run counts too):
    one bad moment of one worker (memory, a flaky file system) should not cost the whole index
    or atlas. Its record goes back to `queued` here; RQ queues the job (the Retry returned)."""
    reason = f"step-error: {type(exc).__name__}: {str(exc)[:200]}"
    outcome = runtime.runs.requeue(
        record.id, runtime.name, reason, max_attempts=1 + runtime.settings.step_retries, enqueue=False
    )
    if outcome == RequeueOutcome.REQUEUED:
        log.warning("step %s of job %s raised %s; queued again", record.id, record.parent, reason)
        return True
    return False
