"""Settles jobs whose worker died or that ran far past their time limit.

Every API process and every worker runs `Reaper.reap_if_elected` each interval, so lost jobs
are noticed even when only workers (or only an API) are left; a lock taken with SET NX (as
RQ's own maintenance lock does) lets one of them do the work per interval instead of all.
"""

from __future__ import annotations

import time

from rq.job import Job as RQJob

from service.blob_leases import BlobLeases
from service.jobspec import JobError, JobStatus
from service.jobstore.record import _text
from service.jobstore.runs import JobRuns, RequeueOutcome
from service.jobstore.store import ENQUEUE_REPAIR_AFTER_SECONDS, RQ_TIMEOUT_GRACE_SECONDS
from service.storage import BlobStore

# Heartbeats older than this are dropped from the workers' sorted set.
FORGET_WORKERS_AFTER_SECONDS = 24 * 3600


class Reaper:
    def __init__(self, runs: JobRuns, owner: str, files: BlobStore | None = None):
        self.runs = runs
        self.store = runs.store
        self.redis = runs.redis
        self.keys = runs.keys
        self.settings = runs.settings
        self.owner = owner
        self.files = files
        self.leases = BlobLeases(self.redis, self.keys)

    def reap_if_elected(self) -> dict[str, int] | None:
        """Reap if no other process has this interval; None when another one has it."""
        lock_ms = max(1, int(self.settings.reaper_interval_seconds * 1000 * 0.9))
        if not self.redis.set(self.keys.reaper_lock, self.owner, nx=True, px=lock_ms):
            return None
        counts = self.reap()
        self.store.repair_admissions()
        if self.files is not None:
            counts["blobs_deleted"] = self.leases.sweep(self.files)
        return counts

    def reap(self) -> dict[str, int]:
        """Running jobs whose worker went silent go back to the queue (or fail `worker-lost`
        once their tries are spent); jobs far past their time limit fail with `timeout`."""
        now = time.time()
        lost_before = now - self.settings.worker_lost_after_seconds
        counts = {"requeued": 0, "worker_lost": 0, "timed_out": 0}
        for raw_id in self.redis.zrange(self.keys.running, 0, -1):
            job_id = _text(raw_id)
            record = self.store.record(job_id)
            if record is None or record.status != JobStatus.running:
                self.redis.zrem(self.keys.running, job_id)
                continue
            beat = self.redis.zscore(self.keys.workers, record.worker)
            started = record.started_at or now
            if beat is None or beat < lost_before:
                self._settle_lost(job_id, record.worker, record.attempts, counts)
            elif now - started > record.timeout_seconds + 2 * RQ_TIMEOUT_GRACE_SECONDS:
                outcome = self.runs.finish(
                    job_id,
                    record.worker,
                    JobStatus.failed,
                    error=JobError(
                        type="timeout",
                        title="The job ran past its time limit",
                        detail=f"limit {record.timeout_seconds} s; the worker did not stop it",
                    ),
                )
                counts["timed_out"] += outcome == "finished"
        counts["timed_out"] += self._settle_overdue_fanouts(now)
        self._repair_fanout_steps(now)
        self.redis.zremrangebyscore(self.keys.workers, "-inf", now - FORGET_WORKERS_AFTER_SECONDS)
        return counts

    def _settle_overdue_fanouts(self, now: float) -> int:
        """A handed-over job past its time limit (plus RQ's grace) fails with `timeout`."""
        ended = 0
        for parent_id in self.runs.fanout.overdue(now - 2 * RQ_TIMEOUT_GRACE_SECONDS):
            record = self.store.record(parent_id)
            if record is None or record.status != JobStatus.running:
                self.redis.zrem(self.keys.fanouts, parent_id)
                continue
            error = JobError(type="timeout", title="The job ran past its time limit",
                             detail=f"limit {record.timeout_seconds} s; its steps did not finish in time")  # fmt: skip
            ended += self.runs.fanout.end(record, JobStatus.failed, error) == "finished"
        return ended

    def _repair_fanout_steps(self, now: float) -> None:
        """Steps created but never handed to RQ (their worker died between the two) are queued;
        so are steps RQ keeps deferred although every step they wait for ended a while ago (RQ
        lost the link: a step the reaper queued again, under the same id, while its first run
        was still finishing on a worker taken for lost)."""
        for raw_id in self.redis.zrange(self.keys.fanouts, 0, -1):
            parent = self.store.record(_text(raw_id))
            steps = (parent.fanout or {}) if parent is not None else {}
            for step_id in [*steps.get("shards", []), steps.get("merge", "")]:
                step = self.store.record(step_id) if step_id else None
                if step is None or step.status != JobStatus.queued or now - step.created_at <= ENQUEUE_REPAIR_AFTER_SECONDS:
                    continue
                if not RQJob.exists(step_id, connection=self.redis):
                    self.store.enqueue(step_id)
                elif step.after and self._rq_status(step_id) == "deferred" and self._ended_long_ago(step.after, now):
                    self.store.enqueue(step_id, after_dependencies=False)

    def _rq_status(self, job_id: str) -> str:
        return _text(self.redis.hget(RQJob.key_for(job_id), "status") or b"")

    def _ended_long_ago(self, step_ids: list[str], now: float) -> bool:
        for step_id in step_ids:
            step = self.store.record(step_id)
            if step is None:
                continue  # expired: it ended long ago
            if step.status in (JobStatus.queued, JobStatus.running):
                return False
            if now - (step.finished_at or now) <= ENQUEUE_REPAIR_AFTER_SECONDS:
                return False  # RQ may still be moving its dependents along
        return True

    def _settle_lost(self, job_id: str, worker: str, attempts: int, counts: dict[str, int]) -> None:
        tries = 1 + self.settings.worker_lost_retries
        outcome = self.runs.requeue(job_id, worker, "worker-lost", max_attempts=tries)
        if outcome == RequeueOutcome.REQUEUED:
            counts["requeued"] += 1
        elif outcome == RequeueOutcome.EXHAUSTED:
            error = JobError(
                type="worker-lost",
                title="The worker running this job stopped responding",
                detail=f"worker {worker} sent no heartbeat for {self.settings.worker_lost_after_seconds:g} s "
                f"(attempt {attempts} of {tries})",
            )
            if self.runs.finish(job_id, worker, JobStatus.failed, error=error) == "finished":
                counts["worker_lost"] += 1
