"""Job records as workers change them: claim, progress, finish, requeue; and worker liveness.

A worker runs jobs in its own long-lived process (models stay loaded), so RQ cannot tell when
such a worker dies mid-job; heartbeats and the reaper (reaper.py) do, within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from service.jobspec import ArtifactRef, JobError, JobResult, JobStatus
from service.jobstore import scripts
from service.jobstore.fanout import FanOut
from service.jobstore.record import JobRecord, _text
from service.jobstore.stats import duration_fields
from service.jobstore.store import JobStore

# Records of jobs this process started, kept for their finish; a few more than one worker runs.
STARTED_KEPT = 64


class OwnershipLost(Exception):
    """The job is no longer this worker's to run: it was reaped, canceled or deleted."""


class RequeueOutcome:
    REQUEUED = "requeued"
    EXHAUSTED = "exhausted"  # no try left
    NOT_OWNER = "not-owner"


class JobRuns:
    def __init__(self, store: JobStore):
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.settings = store.settings
        connection = store.redis
        self._start = scripts.START.bind(connection)
        self._progress = scripts.PROGRESS.bind(connection)
        self._finish = scripts.FINISH.bind(connection)
        self._requeue = scripts.REQUEUE.bind(connection)
        self._started: dict[str, JobRecord] = {}
        self.fanout = FanOut(self)

    def start(self, job_id: str, worker: str) -> JobRecord | None:
        """Claim a queued job for `worker` and return its record as it now stands; None when it
        is no longer queued (canceled, deleted, taken by another worker). One round trip."""
        outcome, *fields = self._start(
            job_key=self.keys.job(job_id),
            running=self.keys.running,
            job_id=job_id,
            worker=worker,
            now=repr(time.time()),
            channel=self.keys.events(job_id),
        )
        if _text(outcome) != "started":
            return None
        record = JobRecord.from_redis(job_id, dict(zip(fields[::2], fields[1::2], strict=True)))
        self._started[job_id] = record
        while len(self._started) > STARTED_KEPT:  # jobs handed over or reaped: never finished here
            try:  # the oldest (dicts keep insertion order); the reaper thread may finish one meanwhile
                self._started.pop(next(iter(self._started)))
            except (StopIteration, RuntimeError, KeyError):
                break
        if record.webhook:
            self.store.notify(record.tenant, record.to_job())
        return record

    def report_progress(self, job_id: str, worker: str, fraction: float, message: str) -> bool:
        """Store progress; returns whether cancel was requested. Raises OwnershipLost."""
        answer = int(
            self._progress(
                job_key=self.keys.job(job_id),
                worker=worker,
                fraction=repr(min(1.0, max(0.0, float(fraction)))),
                message=message[:500],
                channel=self.keys.events(job_id),
            )
        )
        if answer < 0:
            raise OwnershipLost(job_id)
        return answer == 1

    def cancel_requested(self, job_id: str, worker: str) -> bool:
        status, owner, flag = (
            _text(v) for v in self.redis.hmget(self.keys.job(job_id), "status", "worker", "cancel_requested")
        )
        if status != JobStatus.running or owner != worker:
            raise OwnershipLost(job_id)
        return flag == "1"

    def finish(
        self,
        job_id: str,
        worker: str,
        status: JobStatus,
        *,
        error: JobError | None = None,
        summary: dict[str, Any] | None = None,
        artifacts: Sequence[ArtifactRef] = (),
        artifacts_prefix: str = "",
    ) -> str:
        """End a running job, publishing its artifacts (already in the blob store under
        `artifacts_prefix`, see artifacts.py): 'finished' or 'not-owner'. `worker` '' settles the
        job whoever runs it (the reaper). One round trip for a job this process started (its
        record is kept from `start`): the finish, the run time and the admission of the tenant's
        next waiting job are one script."""
        record = self._started.pop(job_id, None) or self.store.record(job_id)
        if record is None:
            return "not-owner"
        now = time.time()
        run_seconds = now - record.started_at if record.started_at is not None else None
        result = JobResult(artifacts=list(artifacts), summary=summary or {}) if status == JobStatus.succeeded else None
        outcome, *unqueued = (
            _text(v)
            for v in self._finish(
                job_key=self.keys.job(job_id),
                running=self.keys.running,
                stats=self.keys.job_stats,
                leases=self.keys.blob_leases,
                fanouts=self.keys.fanouts,
                durations=self.keys.duration_stats,
                job_id=job_id,
                worker=worker,
                status=status.value,
                now=repr(now),
                ttl=self.settings.result_ttl_seconds,
                error_json=error.model_dump_json() if error else "",
                result_json=result.model_dump_json() if result else "",
                channel=self.keys.events(job_id),
                artifacts_prefix=artifacts_prefix if result is not None else "",
                seconds_run=repr(run_seconds or 0.0),
                duration_sum=f"{record.kind}|sum" if run_seconds is not None else "",
                duration_fields=duration_fields(record.kind, run_seconds) if run_seconds is not None else [],
                **self.store.admission_args(record.tenant),
            )
        )
        if outcome == "finished":
            for waiting_id in unqueued:
                self.store.enqueue(waiting_id)
            if record.parent:
                self.fanout.step_finished(record, status, error)
            if record.webhook:
                self.store.notify(record.tenant, self.store.get(record.tenant, job_id))
        return outcome

    def requeue(
        self,
        job_id: str,
        worker: str,
        reason: str,
        *,
        max_attempts: int = 0,
        refund_attempt: bool = False,
        enqueue: bool = True,
    ) -> str:
        """Put a running job back in the queue (RequeueOutcome): while it has tries left
        (`max_attempts`, 0: always), and without counting this try when `refund_attempt`
        (the worker shut down or lost Redis: not the job's fault). `enqueue=False`: the record
        only, for a job that RQ queues again itself (it returned an RQ `Retry`)."""
        outcome = _text(
            self._requeue(
                job_key=self.keys.job(job_id),
                running=self.keys.running,
                job_id=job_id,
                worker=worker,
                max_attempts=max_attempts,
                refund=refund_attempt,
                reason=reason,
                channel=self.keys.events(job_id),
            )
        )
        if outcome == RequeueOutcome.REQUEUED and enqueue:
            self.store.enqueue(job_id)
        return outcome

    # ---- liveness ----------------------------------------------------------------------

    def heartbeat(self, worker: str) -> None:
        self.redis.zadd(self.keys.workers, {worker: time.time()})

    def forget_worker(self, worker: str) -> None:
        self.redis.zrem(self.keys.workers, worker)
