"""A create is one script: the record, RQ's job and the admission together, against a real Redis."""

from __future__ import annotations

import hashlib
import zlib

import pytest
import redis
from rq.job import Job as RQJob

from service.jobspec import JobStatus
from service.jobstore import JobRuns, JobStore
from service.jobstore.store import RUN_JOB_FUNCTION, CatalogCheck
from service.settings import Settings
from tests.conftest import RedisProcess
from tests.service.jobstore.conftest import new_job

FIELDS = {"kind": "k", "model": "m", "params": {"p": 1}, "metadata": {}, "timeout_seconds": 60}
# RQ stamps these with the time of its own call; everything else must be what RQ writes.
RQ_TIMES = ("created_at", "enqueued_at")


def rq_queue(store: JobStore) -> list[str]:
    return [i.decode() for i in store.redis.lrange(store.queue.key, 0, -1)]


def enqueued_by_rq(store: JobStore, job_id: str) -> dict[bytes, bytes]:
    """The hash RQ's own Queue.enqueue_call writes for a job of the same shape (id `job_id`)."""
    record = store.record(job_id)
    store.queue.enqueue_call(
        func=RUN_JOB_FUNCTION, args=(job_id,), job_id=job_id, timeout=record.timeout_seconds + 30, result_ttl=0,
        failure_ttl=store.settings.result_ttl_seconds, description=f"{record.kind} on {record.model}",
    )  # fmt: skip
    return store.redis.hgetall(RQJob.key_for(job_id))


def assert_written_as_rq_writes_it(store: JobStore, job_id: str) -> None:
    ours = store.redis.hgetall(RQJob.key_for(job_id))
    assert ours, "no RQ job"
    job = RQJob.fetch(job_id, connection=store.redis, serializer=store.queue.serializer)
    assert (job.func_name, list(job.args), job.origin, job.get_status()) == (
        RUN_JOB_FUNCTION,
        [job_id],
        store.queue.name,
        "queued",
    )
    store.redis.delete(RQJob.key_for(job_id))
    store.redis.lrem(store.queue.key, 0, job_id)
    theirs = enqueued_by_rq(store, job_id)
    assert {k: v for k, v in ours.items() if k.decode() not in RQ_TIMES} == {
        k: v for k, v in theirs.items() if k.decode() not in RQ_TIMES
    }
    assert zlib.decompress(ours[b"data"]) == zlib.decompress(theirs[b"data"])
    assert set(ours) == set(theirs)


def test_a_job_admitted_at_create_is_on_rq_as_rq_writes_it(store):
    job_id = new_job(store)
    assert store.record(job_id).status == JobStatus.queued
    assert rq_queue(store) == [job_id]
    assert store.redis.sismember(store.queue.redis_queues_keys, store.queue.key)
    assert not store.redis.exists(store.keys.rq_pending(job_id))
    assert_written_as_rq_writes_it(store, job_id)


def test_a_waiting_job_reaches_rq_when_a_finish_frees_a_place(store, runs: JobRuns):
    first, second, waiting = (new_job(store) for _ in range(3))  # the limit is 2
    assert rq_queue(store) == [first, second] and not RQJob.exists(waiting, connection=store.redis)
    assert store.redis.exists(store.keys.rq_pending(waiting))
    runs.start(first, "w1")
    assert runs.finish(first, "w1", JobStatus.succeeded) == "finished"
    assert rq_queue(store) == [first, second, waiting]  # `first` was never taken off by a worker here
    assert not store.redis.exists(store.keys.rq_pending(waiting))
    assert_written_as_rq_writes_it(store, waiting)


def test_a_waiting_job_canceled_leaves_no_rq_job(store):
    ids = [new_job(store) for _ in range(3)]
    assert store.cancel("alice", ids[2])[0] == "canceled"
    assert not store.redis.exists(store.keys.rq_pending(ids[2]))
    assert not RQJob.exists(ids[2], connection=store.redis) and ids[2] not in rq_queue(store)


def test_a_create_sent_again_after_its_reply_was_lost_creates_one_job(store):
    new = store.new_job("alice", **FIELDS, idempotency_key="once", fingerprint="f")
    first = store.create_outcome(new, store._create(**new.script_args))
    again = store.create_outcome(new, store._create(**new.script_args))  # a client's retry of the same call
    assert first.created and again.created and again.job_id == first.job_id
    assert again.fingerprint_matches
    assert rq_queue(store) == [first.job_id]
    assert store.redis.zcard(store.keys.tenant_jobs("alice")) == 1
    assert store.redis.hget(store.keys.job_stats, "k|queued") == b"1"
    assert store.redis.scard(store.keys.tenant_active("alice")) == 1


def test_an_idempotent_repeat_returns_the_same_job_and_creates_nothing(store):
    first = store.create("alice", **FIELDS, idempotency_key="key", fingerprint="f")
    repeat = store.create("alice", **FIELDS, idempotency_key="key", fingerprint="f")
    assert repeat.job_id == first.job_id and not repeat.created and repeat.record is None
    assert rq_queue(store) == [first.job_id] and store.redis.zcard(store.keys.tenant_jobs("alice")) == 1


def test_a_create_planned_on_a_changed_catalog_record_writes_nothing(store):
    catalog = store.keys.catalog("models", "alice"), store.keys.catalog("models", "builtin")
    store.redis.hset(catalog[1], "m", '{"id": "m"}')
    current = hashlib.sha1(b'{"id": "m"}').hexdigest()
    stale = store.create("alice", **FIELDS, idempotency_key="k", fingerprint="f",
                         catalog_checks=[CatalogCheck(*catalog, "m", hashlib.sha1(b"before").hexdigest())])  # fmt: skip
    assert stale.stale and not stale.created
    assert store.redis.zcard(store.keys.tenant_jobs("alice")) == 0 and rq_queue(store) == []
    assert not store.redis.exists(store.keys.job(stale.job_id), store.keys.idempotency("alice", "k"))
    store.redis.hset(catalog[0], "m", '{"id": "m", "own": true}')  # the tenant's own record now wins
    assert store.create("alice", **FIELDS, catalog_checks=[CatalogCheck(*catalog, "m", current)]).stale
    own = hashlib.sha1(b'{"id": "m", "own": true}').hexdigest()
    created = store.create("alice", **FIELDS, catalog_checks=[CatalogCheck(*catalog, "m", own)])
    assert created.created and rq_queue(store) == [created.job_id]


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_a_create_that_redis_refuses_leaves_neither_record_nor_rq_job(own_redis):
    """Out of memory (maxmemory with noeviction, as production runs): the create fails whole,
    and once memory is back the next create writes both."""
    connection = redis.Redis.from_url(own_redis.url)
    store = JobStore(connection, Settings(redis_url=own_redis.url, namespace="oom"))
    used = int(connection.info("memory")["used_memory"])
    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", str(max(1, used - 1024 * 1024)))  # below what is used: no write fits
    with pytest.raises(redis.ResponseError, match="OOM"):
        store.create("alice", **FIELDS)
    assert connection.keys("oom:*") == [] and connection.keys("rq:*") == []
    connection.config_set("maxmemory", "0")
    job_id = store.create("alice", **FIELDS).job_id
    assert store.record(job_id) is not None and rq_queue(store) == [job_id]
    assert RQJob.exists(job_id, connection=connection)
