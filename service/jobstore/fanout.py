"""Work bigger than one job, split over every worker with RQ's own dependencies.

A job whose work is too big for one worker (an activation index over a large dataset, a layer
atlas) runs on a worker only long enough to plan: it creates its steps, one record each (shards
that any worker takes from the queue, and a merge step), hands itself over to them, and returns.
RQ runs the shards in any order on any worker and enqueues the merge once every shard is done
(`depends_on`); the merge finishes the parent job with its result.

What the steps get from being job records (not bare RQ jobs): the same lost-worker detection
(heartbeats and the reaper: a shard of a killed worker is queued again, its try counted), the
same cooperative cancel, and one progress, one cancel and one outcome for the whole: the parent's
progress moves as steps end; canceling the parent cancels its steps at once; a step that fails
for good fails the parent. Steps are not listed with the tenant's jobs and are not admitted
against its concurrency limit (the parent was).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.jobspec import JobError, JobStatus
from service.jobstore import scripts
from service.jobstore.ids import new_job_id
from service.jobstore.record import JobRecord, _text

if TYPE_CHECKING:
    from service.jobstore.runs import JobRuns

# Who owns a handed-over job: its fan-out, not a worker.
FANOUT_OWNER = "fanout"
# The parent's progress: planning up to PLANNED, then the shards, then the merge.
PLANNED, SHARDS_SPAN = 0.05, 0.85


@dataclass(frozen=True)
class Step:
    """One step of a fan-out. `after`: positions (in the list handed over) of earlier steps it
    waits for; `waits_for`: step ids of other jobs it also waits for (a build it reads)."""

    kind: str
    params: dict[str, Any]
    after: tuple[int, ...] = ()
    waits_for: tuple[str, ...] = ()


class FanOut:
    def __init__(self, runs: JobRuns):
        self.runs = runs
        self.store, self.redis, self.keys = runs.store, runs.redis, runs.keys
        self._hand_over, self._step_done = scripts.HAND_OVER.bind(self.redis), scripts.STEP_DONE.bind(self.redis)

    def hand_over(
        self,
        parent: JobRecord,
        worker: str,
        shards: list[Step],
        merge: Step,
        *,
        merge_also_after: list[str] = (),
        claims: list[str] = (),
    ) -> list[str]:
        """Create the steps, give the parent to them, queue them; returns the shard ids. A
        shard waits for the shards its `after` names (stages: an index's shards, then its merge,
        then chunks that read it); the merge waits for every shard and for `merge_also_after`
        (steps of other jobs). Raises OwnershipLost if the parent is no longer this worker's
        (nothing is queued then). `claims`: Redis keys holding the parent's id (an index build's
        claim) that go when the parent ends without succeeding, so that a job submitted after
        a cancel builds again instead of waiting for steps that will never run."""
        from service.jobstore.runs import OwnershipLost

        shard_ids: list[str] = []
        for step in shards:
            after = [shard_ids[position] for position in step.after] + list(step.waits_for)
            shard_ids.append(self._create_step(parent, step, after=after))
        merge_id = self._create_step(parent, merge, after=[*shard_ids, *merge_also_after])
        deadline = (parent.started_at or time.time()) + parent.timeout_seconds
        outcome = _text(
            self._hand_over(
                job_key=self.keys.job(parent.id),
                running=self.keys.running,
                fanouts=self.keys.fanouts,
                job_id=parent.id,
                worker=worker,
                owner=FANOUT_OWNER,
                deadline=repr(deadline),
                fanout_json=json.dumps({"shards": shard_ids, "merge": merge_id, "claims": list(claims)}),
                message=f"{len(shard_ids)} shards queued for every worker",
                channel=self.keys.events(parent.id),
            )  # fmt: skip
        )
        if outcome != "handed-over":
            for step_id in [*shard_ids, merge_id]:
                self.redis.delete(self.keys.job(step_id))
            raise OwnershipLost(parent.id)
        for step_id in [*shard_ids, merge_id]:
            self.store.enqueue(step_id)
        return shard_ids

    def _create_step(self, parent: JobRecord, step: Step, after: list[str] | None = None) -> str:
        now = time.time()
        record = JobRecord(
            id=new_job_id(now), tenant=parent.tenant, kind=step.kind, model=parent.model, status=JobStatus.queued,
            params=step.params, metadata={}, created_at=now, timeout_seconds=parent.timeout_seconds,
            message="queued", parent=parent.id, after=after or [],
        )  # fmt: skip
        self.redis.hset(self.keys.job(record.id), mapping=record.to_redis())
        return record.id

    def step_finished(self, step: JobRecord, status: JobStatus, error: JobError | None) -> None:
        """After a step ended: a shard that succeeded moves the parent's progress; a step that
        failed or was canceled ends the parent the same way and cancels the other steps."""
        parent = self.store.record(step.parent)
        if parent is None or parent.status != JobStatus.running or parent.worker != FANOUT_OWNER:
            return
        if status == JobStatus.succeeded:
            if step.id in parent.fanout.get("shards", []):
                self._step_done(
                    job_key=self.keys.job(parent.id), owner=FANOUT_OWNER, steps=len(parent.fanout["shards"]),
                    base=PLANNED, span=SHARDS_SPAN, channel=self.keys.events(parent.id),
                )  # fmt: skip
            return
        if status == JobStatus.canceled:
            self.end(parent, JobStatus.canceled)
        else:
            title = (error.title if error else "A step failed") + f" (step {step.kind} {step.id})"
            self.end(parent, JobStatus.failed, JobError(type=error.type if error else "job-error", title=title,
                                                         detail=error.detail if error else ""))  # fmt: skip

    def end(self, parent: JobRecord, status: JobStatus, error: JobError | None = None) -> str:
        """End a handed-over job that will not succeed (canceled, failed, timed out) and cancel
        what is left of its steps."""
        outcome = self.runs.finish(parent.id, FANOUT_OWNER, status, error=error)
        self.cancel_steps(parent)
        for key in (parent.fanout or {}).get("claims", []):
            if _text(self.redis.get(key) or b"") == parent.id:
                self.redis.delete(key)
        return outcome

    def cancel_steps(self, parent: JobRecord) -> None:
        fanout = parent.fanout or {}
        for step_id in [*fanout.get("shards", []), fanout.get("merge", "")]:
            if not step_id:
                continue
            self.store.cancel(parent.tenant, step_id)  # queued: at once (and off RQ); running: at its next step

    def overdue(self, now: float) -> list[str]:
        return [_text(i) for i in self.redis.zrangebyscore(self.keys.fanouts, "-inf", now)]
