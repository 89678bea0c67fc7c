"""A job handed over to its fan-out: steps created and queued (the merge waiting on RQ for the
shards), one progress, one cancel, one outcome; against a real Redis."""

from __future__ import annotations

import time

import pytest
from rq.job import Job as RQJob

from service.jobspec import JobError, JobStatus
from service.jobstore import ArtifactBlob, OwnershipLost
from service.jobstore.fanout import FANOUT_OWNER, Step
from tests.service.jobstore.conftest import new_job


def handed_over(store, runs, shards: int = 3):
    parent_id = new_job(store)
    parent = runs.start(parent_id, "w1")
    shard_ids = runs.fanout.hand_over(parent, "w1", [Step("shard", {"n": i}) for i in range(shards)], Step("merge", {}))
    return store.record(parent_id), shard_ids


def test_the_parent_leaves_its_worker_for_its_steps_and_the_merge_waits_for_the_shards(store, runs):
    parent, shard_ids = handed_over(store, runs)
    assert parent.status == JobStatus.running and parent.worker == FANOUT_OWNER
    assert parent.fanout["shards"] == shard_ids
    assert store.redis.zscore(store.keys.running, parent.id) is None  # no heartbeat to watch
    assert store.redis.zscore(store.keys.fanouts, parent.id) == pytest.approx(parent.started_at + 60, abs=0.01)
    steps = [store.record(i) for i in shard_ids]
    assert [(s.kind, s.params, s.parent, s.status) for s in steps] == [("shard", {"n": i}, parent.id, JobStatus.queued) for i in range(3)]
    queued = [i.decode() for i in store.redis.lrange(store.queue.key, 0, -1)]
    assert set(shard_ids) <= set(queued)
    merge = RQJob.fetch(parent.fanout["merge"], connection=store.redis)
    assert merge.get_status() == "deferred" and set(merge._dependency_ids) == set(shard_ids)
    assert parent.fanout["merge"] not in queued
    listed, _ = store.list("alice", page_size=50)
    assert [job.id for job in listed] == [parent.id]  # steps are not the tenant's jobs


def test_shards_move_the_parent_s_progress_and_the_merge_finishes_it(store, runs, files):
    parent, shard_ids = handed_over(store, runs, shards=4)
    for done, shard_id in enumerate(shard_ids[:2], start=1):
        runs.start(shard_id, "w2")
        runs.finish(shard_id, "w2", JobStatus.succeeded)
        assert store.record(parent.id).fraction == pytest.approx(0.05 + 0.85 * done / 4)
    for shard_id in shard_ids[2:]:
        runs.start(shard_id, "w2")
        runs.finish(shard_id, "w2", JobStatus.succeeded)
    merge_id = parent.fanout["merge"]
    runs.start(merge_id, "w3")
    prefix, refs = files.write(parent.id, [ArtifactBlob("index.npz", "application/octet-stream", b"npz")])
    assert runs.finish(parent.id, FANOUT_OWNER, JobStatus.succeeded, artifacts=refs, artifacts_prefix=prefix) == "finished"
    runs.finish(merge_id, "w3", JobStatus.succeeded)
    done = store.record(parent.id)
    assert done.status == JobStatus.succeeded and [a.name for a in done.artifacts] == ["index.npz"]
    assert store.redis.zcard(store.keys.fanouts) == 0


def test_a_step_that_fails_for_good_fails_the_parent_and_cancels_the_rest(store, runs):
    parent, shard_ids = handed_over(store, runs)
    runs.start(shard_ids[0], "w2")
    runs.start(shard_ids[1], "w3")
    runs.finish(shard_ids[0], "w2", JobStatus.failed, error=JobError(type="worker-lost", title="The worker stopped"))
    failed = store.record(parent.id)
    assert failed.status == JobStatus.failed and failed.error["type"] == "worker-lost"
    assert shard_ids[0] in failed.error["title"]
    assert store.record(shard_ids[1]).cancel_requested  # running: asked to stop
    assert store.record(shard_ids[2]).status == JobStatus.canceled  # queued: at once
    assert store.record(failed.fanout["merge"]).status == JobStatus.canceled
    assert runs.cancel_requested(shard_ids[1], "w3") is True


def test_canceling_the_parent_ends_it_at_once_with_its_steps(store, runs):
    parent, shard_ids = handed_over(store, runs)
    runs.start(shard_ids[0], "w2")
    outcome, job = store.cancel("alice", parent.id)
    assert outcome == "canceled" and job.status == JobStatus.canceled
    assert store.record(shard_ids[0]).cancel_requested and store.record(shard_ids[1]).status == JobStatus.canceled
    assert store.redis.zcard(store.keys.fanouts) == 0
    assert shard_ids[1] not in [i.decode() for i in store.redis.lrange(store.queue.key, 0, -1)]


def test_a_fanout_past_its_time_limit_fails_with_timeout(store, runs, reaper):
    parent, shard_ids = handed_over(store, runs)
    store.redis.zadd(store.keys.fanouts, {parent.id: time.time() - 3600})
    assert reaper.reap()["timed_out"] == 1
    assert store.record(parent.id).error["type"] == "timeout"
    assert all(store.record(i).status == JobStatus.canceled for i in shard_ids)


def test_only_the_owning_worker_hands_a_job_over(store, runs, reaper):
    parent_id = new_job(store)
    parent = runs.start(parent_id, "w1")
    reaper.reap()  # w1 never beat: the job goes back to the queue
    with pytest.raises(OwnershipLost):
        runs.fanout.hand_over(parent, "w1", [Step("shard", {})], Step("merge", {}))
    assert store.redis.zcard(store.keys.fanouts) == 0
    assert [k for k in store.redis.scan_iter(f"{store.keys.ns}:job:*")] == [store.keys.job(parent_id).encode()]


def test_steps_of_a_worker_that_died_before_queuing_them_are_queued_by_the_reaper(store, runs, reaper):
    parent, shard_ids = handed_over(store, runs)
    for step_id in shard_ids:
        RQJob.fetch(step_id, connection=store.redis).delete()
        store.redis.hset(store.keys.job(step_id), "created_at", repr(time.time() - 60))
    reaper.reap()
    assert all(RQJob.exists(i, connection=store.redis) for i in shard_ids)


def test_a_step_rq_keeps_deferred_after_every_step_it_waits_for_ended_is_queued_by_the_reaper(store, runs, reaper):
    """RQ loses a dependency's link when the reaper queued that step again under the same id
    while its first run was still finishing: the merge would stay deferred for good."""
    parent, shard_ids = handed_over(store, runs, shards=2)
    merge_id = parent.fanout["merge"]
    for shard_id in shard_ids:  # the shards end in their records; RQ never hears of it
        runs.start(shard_id, "w2")
        runs.finish(shard_id, "w2", JobStatus.succeeded)
    assert RQJob.fetch(merge_id, connection=store.redis).get_status() == "deferred"
    reaper.reap()  # just ended: RQ may still be moving the merge along
    assert RQJob.fetch(merge_id, connection=store.redis).get_status() == "deferred"
    for step_id in [*shard_ids, merge_id]:
        store.redis.hset(store.keys.job(step_id), "created_at", repr(time.time() - 60))
    for shard_id in shard_ids:
        store.redis.hset(store.keys.job(shard_id), "finished_at", repr(time.time() - 60))
    reaper.reap()
    assert RQJob.fetch(merge_id, connection=store.redis).get_status() == "queued"
    assert merge_id in [i.decode() for i in store.redis.lrange(store.queue.key, 0, -1)]
