"""Each Lua transition of a job record, and the races between them, against a real Redis."""

from __future__ import annotations

import hashlib
import time

from rq.job import Job as RQJob

from service.jobspec import JobError, JobStatus
from service.jobstore import ArtifactBlob, CancelOutcome, JobRecord, RequeueOutcome
from service.jobstore.ids import request_fingerprint
from tests.service.jobstore.conftest import new_job


def rq_queued_ids(store) -> list[str]:
    return [i.decode() for i in store.redis.lrange(store.queue.key, 0, -1)]


def test_create_writes_the_record_indexes_and_stats(store):
    job_id = new_job(store, webhook=None)
    record = store.record(job_id)
    assert isinstance(record, JobRecord)
    assert (record.tenant, record.kind, record.model, record.status) == ("alice", "k", "m", JobStatus.queued)
    assert (record.params, record.metadata, record.attempts, record.timeout_seconds) == ({"p": 1}, {"m": "x"}, 0, 60)
    assert store.redis.zscore(store.keys.tenant_jobs("alice"), job_id) == 0
    assert store.redis.hget(store.keys.job_stats, "k|queued") == b"1"
    assert job_id in rq_queued_ids(store)
    assert store.get("bob", job_id) is None  # another tenant's id is unknown to it


def test_an_idempotency_key_returns_the_first_job_and_spots_another_body(store):
    body = {"kind": "k", "model": "m"}
    first = store.create(
        "alice", kind="k", model="m", params={}, metadata={}, timeout_seconds=60,
        idempotency_key="key-1", fingerprint=request_fingerprint(body),
    )  # fmt: skip
    again = store.create(
        "alice", kind="k", model="m", params={}, metadata={}, timeout_seconds=60,
        idempotency_key="key-1", fingerprint=request_fingerprint(body),
    )  # fmt: skip
    other = store.create(
        "alice", kind="k", model="m", params={}, metadata={}, timeout_seconds=60,
        idempotency_key="key-1", fingerprint=request_fingerprint({**body, "x": 1}),
    )  # fmt: skip
    assert first.created and not again.created and again.job_id == first.job_id and again.fingerprint_matches
    assert not other.created and not other.fingerprint_matches
    bobs = store.create("bob", kind="k", model="m", params={}, metadata={}, timeout_seconds=60, idempotency_key="key-1")
    assert bobs.created and bobs.job_id != first.job_id  # keys are per tenant


def test_admission_holds_a_tenant_at_its_limit_and_admits_in_order(store, runs):
    ids = [new_job(store) for _ in range(4)]  # the limit is 2
    assert rq_queued_ids(store) == ids[:2][::-1] or set(rq_queued_ids(store)) == set(ids[:2])
    assert [i.decode() for i in store.redis.lrange(store.keys.tenant_waiting("alice"), 0, -1)] == ids[2:]
    runs.start(ids[0], "w1")
    assert runs.finish(ids[0], "w1", JobStatus.succeeded) == "finished"
    assert ids[2] in rq_queued_ids(store) and ids[3] not in rq_queued_ids(store)
    assert new_job(store, tenant="bob") in rq_queued_ids(store)  # bob's limit is his own


def test_start_claims_a_job_once(store, runs):
    job_id = new_job(store)
    record = runs.start(job_id, "w1")
    assert record.status == JobStatus.running and record.worker == "w1" and record.attempts == 1
    assert runs.start(job_id, "w2") is None
    assert store.redis.zscore(store.keys.running, job_id) is not None


def test_progress_is_refused_to_a_worker_that_does_not_own_the_job(store, runs):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    assert runs.report_progress(job_id, "w1", 0.5, "half") is False
    assert (store.record(job_id).fraction, store.record(job_id).message) == (0.5, "half")
    try:
        runs.report_progress(job_id, "w2", 0.6, "not mine")
        raise AssertionError("expected OwnershipLost")
    except Exception as exc:
        assert type(exc).__name__ == "OwnershipLost"


def test_finish_publishes_status_and_artifacts_together(store, runs, files):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    blobs = [ArtifactBlob("a.json", "application/json", b"{}"), ArtifactBlob("b.bin", "application/octet-stream", b"\0" * 10)]
    prefix, refs = files.write(job_id, blobs)
    held_until = store.redis.zscore(store.keys.blob_leases, prefix)
    assert held_until > time.time() + 600  # written, not published: held for the grace period
    assert runs.finish(job_id, "w1", JobStatus.succeeded, summary={"n": 2}, artifacts=refs, artifacts_prefix=prefix) == "finished"
    record = store.record(job_id)
    assert record.status == JobStatus.succeeded and record.fraction == 1.0
    assert [(a.name, a.bytes) for a in record.artifacts] == [("a.json", 2), ("b.bin", 10)]
    assert record.artifacts[1].sha256 == hashlib.sha256(b"\0" * 10).hexdigest()
    assert files.store.get_bytes(record.artifact_key("b.bin")) == b"\0" * 10
    # The blobs now live exactly as long as the record: their lease ends when it expires.
    assert abs(store.redis.zscore(store.keys.blob_leases, prefix) - record.expires_at) < 0.01
    assert 0 < store.redis.ttl(store.keys.job(job_id)) <= store.settings.result_ttl_seconds
    assert not store.redis.sismember(store.keys.tenant_active("alice"), job_id)
    assert store.redis.hget(store.keys.job_stats, "k|succeeded") == b"1"


def test_the_sweep_deletes_blobs_of_expired_jobs_and_of_dead_writers_only(store, runs, files, reaper):
    published, dead = new_job(store), new_job(store)
    for job_id in (published, dead):
        runs.start(job_id, "w1")
    prefix, refs = files.write(published, [ArtifactBlob("x", "text/plain", b"x")])
    runs.finish(published, "w1", JobStatus.succeeded, artifacts=refs, artifacts_prefix=prefix)
    orphan, _ = files.write(dead, [ArtifactBlob("y", "text/plain", b"y")])  # its worker dies here
    assert reaper.leases.sweep(files.store) == 0  # nothing is due yet
    assert reaper.leases.sweep(files.store, now=time.time() + 1800) == 0
    assert reaper.leases.sweep(files.store, now=time.time() + 3601) == 1  # the dead writer's grace ended
    assert list(files.store.list_blobs(f"artifacts/{dead}")) == []
    expires = store.record(published).expires_at
    assert reaper.leases.sweep(files.store, now=expires - 1) == 0
    assert reaper.leases.sweep(files.store, now=expires + 1) == 1  # the published job expired
    assert list(files.store.list_blobs("artifacts")) == []
    assert store.redis.zcard(store.keys.blob_leases) == 0


def test_a_try_that_lost_its_job_discards_its_blobs(store, runs, files, reaper):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    reaper.reap()  # w1 never beat: the job goes back to the queue
    prefix, refs = files.write(job_id, [ArtifactBlob("x", "text/plain", b"x")])
    assert runs.finish(job_id, "w1", JobStatus.succeeded, artifacts=refs, artifacts_prefix=prefix) == "not-owner"
    files.discard(prefix)
    assert list(files.store.list_blobs(f"artifacts/{job_id}")) == []


def test_cancel_of_a_queued_job_is_immediate_and_takes_it_off_rq(store, runs):
    job_id = new_job(store)
    outcome, job = store.cancel("alice", job_id)
    assert outcome == CancelOutcome.CANCELED and job.status == JobStatus.canceled
    assert job_id not in rq_queued_ids(store)
    assert RQJob.fetch(job_id, connection=store.redis).is_canceled
    assert runs.start(job_id, "w1") is None  # a worker that dequeued it anyway skips it


def test_cancel_of_a_running_job_is_a_request_the_worker_sees(store, runs):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    outcome, job = store.cancel("alice", job_id)
    assert outcome == CancelOutcome.REQUESTED and job.cancel_requested and job.status == JobStatus.running
    assert runs.report_progress(job_id, "w1", 0.1, "step") is True
    assert runs.cancel_requested(job_id, "w1") is True


def test_cancel_racing_finish_has_one_winner(store, runs):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    runs.finish(job_id, "w1", JobStatus.succeeded)
    assert store.cancel("alice", job_id)[0] == JobStatus.succeeded
    other = new_job(store)
    store.cancel("alice", other)
    assert runs.start(other, "w1") is None


def test_delete_refuses_unfinished_jobs_and_releases_artifacts(store, runs, files, reaper):
    job_id = new_job(store)
    assert store.delete("alice", job_id) == "queued"
    runs.start(job_id, "w1")
    assert store.delete("alice", job_id) == "running"
    prefix, refs = files.write(job_id, [ArtifactBlob("x", "text/plain", b"x")])
    runs.finish(job_id, "w1", JobStatus.succeeded, artifacts=refs, artifacts_prefix=prefix)
    assert store.delete("bob", job_id) == "missing"
    assert store.delete("alice", job_id) == "deleted"
    assert store.record(job_id) is None and store.redis.zscore(store.keys.blob_leases, prefix) == 0
    assert store.redis.zscore(store.keys.tenant_jobs("alice"), job_id) is None
    assert reaper.leases.sweep(files.store) == 1 and list(files.store.list_blobs("artifacts")) == []


def test_a_lost_worker_s_job_is_requeued_then_fails_when_its_tries_are_spent(store, runs, reaper):
    job_id = new_job(store)
    runs.heartbeat("w1")
    runs.start(job_id, "w1")
    assert reaper.reap() == {"requeued": 0, "worker_lost": 0, "timed_out": 0}  # w1 is alive
    store.redis.zadd(store.keys.workers, {"w1": time.time() - 10})  # w1 went silent
    assert reaper.reap()["requeued"] == 1
    record = store.record(job_id)
    assert record.status == JobStatus.queued and record.attempts == 1 and "worker-lost" in record.message
    runs.start(job_id, "w1")  # attempt 2, and w1 is still silent
    assert reaper.reap()["worker_lost"] == 1
    record = store.record(job_id)
    assert record.status == JobStatus.failed and record.error["type"] == "worker-lost"
    assert "attempt 2 of 2" in record.error["detail"]


def test_the_reaper_wins_over_a_late_finish_of_the_lost_worker(store, runs, reaper):
    job_id = new_job(store)
    runs.start(job_id, "w1")  # w1 never beats
    reaper.reap()
    assert runs.finish(job_id, "w1", JobStatus.succeeded) == "not-owner"
    assert store.record(job_id).status == JobStatus.queued


def test_a_shutdown_requeue_does_not_count_the_try(store, runs):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    assert runs.requeue(job_id, "w1", "worker shut down", refund_attempt=True) == RequeueOutcome.REQUEUED
    record = store.record(job_id)
    assert record.status == JobStatus.queued and record.attempts == 0 and record.started_at is None
    assert job_id in rq_queued_ids(store)
    assert runs.requeue(job_id, "w1", "again") == RequeueOutcome.NOT_OWNER


def test_one_reaper_is_elected_per_interval(runs):
    from service.jobstore import Reaper

    first, second = Reaper(runs, "api-1"), Reaper(runs, "worker-1")
    assert first.reap_if_elected() is not None
    assert second.reap_if_elected() is None
    time.sleep(runs.settings.reaper_interval_seconds)
    assert second.reap_if_elected() is not None


def test_a_job_far_past_its_limit_fails_with_timeout(store, runs, reaper):
    job_id = new_job(store, timeout_seconds=1)
    runs.heartbeat("w1")
    runs.start(job_id, "w1")
    store.redis.hset(store.keys.job(job_id), "started_at", repr(time.time() - 3600))
    assert reaper.reap()["timed_out"] == 1
    assert store.record(job_id).error["type"] == "timeout"


def test_failed_jobs_keep_their_error(store, runs):
    job_id = new_job(store)
    runs.start(job_id, "w1")
    runs.finish(job_id, "w1", JobStatus.failed, error=JobError(type="job-error", title="t", detail="d"))
    job = store.get("alice", job_id)
    assert job.error.type == "job-error" and job.result is None and job.status == JobStatus.failed


def test_listing_pages_newest_first_with_filters(store, runs):
    ids = [new_job(store, tenant="carol", kind="even" if i % 2 == 0 else "odd") for i in range(7)]
    seen, token = [], None
    from service.jobstore import decode_page_token

    while True:
        page, next_token = store.list("carol", page_size=3, after=decode_page_token(token) if token else None)
        seen += [job.id for job in page]
        if next_token is None:
            break
        token = next_token
    assert seen == sorted(ids, reverse=True)  # id order is time order (ids made in one ms: random tail)
    evens, _ = store.list("carol", page_size=10, kind="even")
    assert [job.id for job in evens] == sorted((i for n, i in enumerate(ids) if n % 2 == 0), reverse=True)
