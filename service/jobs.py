"""Job records in Redis, and their lifecycle over RQ.

Every state change is one Lua script, so that a record, its indexes and its artifacts always
change together: a client never sees `succeeded` without artifacts, and two parties (a worker
finishing, a reaper declaring it lost, a client canceling) can race without corrupting anything:
each transition checks the state it starts from, and the loser is told so.

Layout (all keys under the namespace `ns`):
  ns:job:{id}              hash: the job record (JSON fields for params, metadata, error, result)
  ns:tenant:{t}:jobs       sorted set, all scores 0: the tenant's job ids, in id (= time) order
  ns:tenant:{t}:waiting    list: jobs over the tenant's concurrency limit, not yet on RQ
  ns:tenant:{t}:active     set: jobs handed to RQ (queued there or running)
  ns:tenants               set: every tenant that ever created a job
  ns:tenants-waiting       set: tenants whose waiting list is not empty
  ns:running               sorted set: running job ids by start time (for the reaper)
  ns:workers               sorted set: worker names by last heartbeat time
  ns:artifact:{id}:{name}  string: one artifact's bytes (expires with the job)
  ns:idem:{t}:{key}        string: JSON {id, fingerprint} of an Idempotency-Key
  ns:events:{id}           pub/sub channel: status and progress of one job
  ns:stats:jobs            hash: `kind|status` -> count of jobs that reached that status
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio
from rq import Queue
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from service.jobspec import (
    ArtifactRef,
    Job,
    JobError,
    JobResult,
    JobStatus,
    Progress,
)
from service.settings import Settings
from service.webhooks import WebhookOutbox

RUN_JOB_FUNCTION = "worker.tasks.run_job"
# RQ's own timeout is a backstop behind the cooperative one checked between steps.
RQ_TIMEOUT_GRACE_SECONDS = 30
JOB_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Keys:
    def __init__(self, namespace: str):
        self.ns = namespace

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    @property
    def job_prefix(self) -> str:
        return f"{self.ns}:job:"

    def tenant_jobs(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:jobs"

    def tenant_waiting(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:waiting"

    def tenant_active(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:active"

    @property
    def tenants(self) -> str:
        return f"{self.ns}:tenants"

    @property
    def tenants_waiting(self) -> str:
        return f"{self.ns}:tenants-waiting"

    @property
    def running(self) -> str:
        return f"{self.ns}:running"

    @property
    def workers(self) -> str:
        return f"{self.ns}:workers"

    def artifact(self, job_id: str, name: str) -> str:
        return f"{self.ns}:artifact:{job_id}:{name}"

    def idempotency(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.ns}:idem:{tenant}:{digest}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:events:{job_id}"

    @property
    def all_events(self) -> str:
        return f"{self.ns}:events:*"

    def job_id_of_events(self, channel: str) -> str:
        return channel.rpartition(":")[2]

    @property
    def job_stats(self) -> str:
        return f"{self.ns}:stats:jobs"

    @property
    def duration_stats(self) -> str:
        return f"{self.ns}:stats:duration"


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_job_id(now: float | None = None) -> str:
    """A ULID-style id: 10 characters of milliseconds, then 16 random ones.

    Ids sort by creation time as plain strings, which is what lets listing page through a
    sorted set by id with no duplicates or gaps while new jobs arrive.
    """
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def request_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The id the next page starts after; ValueError if the token was not made by us."""
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("not a page token returned by this service") from exc
    if not isinstance(after, str) or len(after) != 26:
        raise ValueError("not a page token returned by this service")
    return after


@dataclass(frozen=True)
class ArtifactBlob:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class CreateOutcome:
    job_id: str
    created: bool
    fingerprint_matches: bool = True


class CancelOutcome:
    CANCELED = "canceled"
    REQUESTED = "requested"
    MISSING = "missing"


class OwnershipLost(Exception):
    """The job is no longer this worker's to run: it was reaped, canceled or deleted."""


_CREATE = """
local job_key, tenant_jobs, waiting, tenants_waiting, idem_key, stats, tenants = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job_id, has_idem, fingerprint, idem_ttl, tenant, job_prefix, stat_field = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if has_idem == '1' then
  local existing = redis.call('GET', idem_key)
  if existing then
    local record = cjson.decode(existing)
    if redis.call('EXISTS', job_prefix .. record.id) == 1 then
      return {'existing', record.id, record.fingerprint}
    end
  end
  redis.call('SET', idem_key, cjson.encode({id = job_id, fingerprint = fingerprint}), 'EX', idem_ttl)
end
for i = 8, #ARGV, 2 do
  redis.call('HSET', job_key, ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', tenant_jobs, 0, job_id)
redis.call('RPUSH', waiting, job_id)
redis.call('SADD', tenants_waiting, tenant)
redis.call('SADD', tenants, tenant)
redis.call('HINCRBY', stats, stat_field, 1)
return {'created', job_id, fingerprint}
"""

_ADMIT = """
local waiting, active, tenants_waiting = KEYS[1], KEYS[2], KEYS[3]
local limit, job_prefix, tenant = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local admitted = {}
while limit == 0 or redis.call('SCARD', active) < limit do
  local job_id = redis.call('LPOP', waiting)
  if not job_id then break end
  if redis.call('HGET', job_prefix .. job_id, 'status') == 'queued' then
    redis.call('SADD', active, job_id)
    table.insert(admitted, job_id)
  end
end
if redis.call('LLEN', waiting) == 0 then
  redis.call('SREM', tenants_waiting, tenant)
end
return admitted
"""

_START = """
local job_key, running = KEYS[1], KEYS[2]
local job_id, worker, now, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status = redis.call('HGET', job_key, 'status')
if status ~= 'queued' then return status or 'missing' end
redis.call('HSET', job_key, 'status', 'running', 'started_at', now, 'worker', worker,
           'fraction', '0', 'message', 'started')
local attempts = redis.call('HINCRBY', job_key, 'attempts', 1)
redis.call('ZADD', running, now, job_id)
redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'running'}))
return 'started'
"""

_PROGRESS = """
local job_key = KEYS[1]
local worker, fraction, message, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local state = redis.call('HMGET', job_key, 'status', 'worker', 'cancel_requested')
if state[1] ~= 'running' or state[2] ~= worker then return -1 end
redis.call('HSET', job_key, 'fraction', fraction, 'message', message)
redis.call('PUBLISH', channel, cjson.encode({type = 'progress', fraction = tonumber(fraction), message = message}))
if state[3] == '1' then return 1 end
return 0
"""

# KEYS: job, running, active, stats, then one key per artifact.
# ARGV: id, worker ('' = any), status, now, ttl, error, result, stat field, channel,
#       max attempts (requeue if attempts are below it; 0 = never), refund ('1': a requeue
#       does not count the try), then artifact bytes.
_FINISH = """
local job_key, running, active, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, worker, status, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local error_json, result_json, stat_field, channel = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local max_attempts, refund = tonumber(ARGV[10]), ARGV[11]
local state = redis.call('HMGET', job_key, 'status', 'worker', 'attempts')
if state[1] ~= 'running' or (worker ~= '' and state[2] ~= worker) then return 'not-owner' end
redis.call('ZREM', running, job_id)
if max_attempts > 0 and tonumber(state[3] or '0') < max_attempts then
  redis.call('HSET', job_key, 'status', 'queued', 'worker', '', 'started_at', '',
             'fraction', '0', 'message', 'queued again: ' .. status)
  if refund == '1' then redis.call('HINCRBY', job_key, 'attempts', -1) end
  redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'queued'}))
  return 'requeued'
end
for i = 5, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 7], 'EX', ttl)
end
local fields = {'status', status, 'finished_at', now, 'expires_at', tostring(tonumber(now) + ttl)}
if status == 'succeeded' then
  table.insert(fields, 'fraction'); table.insert(fields, '1')
  table.insert(fields, 'message'); table.insert(fields, 'done')
end
if error_json ~= '' then table.insert(fields, 'error'); table.insert(fields, error_json) end
if result_json ~= '' then table.insert(fields, 'result'); table.insert(fields, result_json) end
redis.call('HSET', job_key, unpack(fields))
redis.call('EXPIRE', job_key, ttl)
redis.call('SREM', active, job_id)
redis.call('HINCRBY', stats, stat_field, 1)
redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = status}))
return 'finished'
"""

# KEYS: job, waiting, active, rq queue list, rq job hash, stats. ARGV: id, now, ttl, stat field, channel
_CANCEL = """
local job_key, waiting, active, rq_queue, rq_job, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_id, now, ttl, stat_field, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local status = redis.call('HGET', job_key, 'status')
if not status then return 'missing' end
if status == 'queued' then
  redis.call('HSET', job_key, 'status', 'canceled', 'finished_at', now,
             'expires_at', tostring(tonumber(now) + ttl), 'message', 'canceled while queued')
  redis.call('EXPIRE', job_key, ttl)
  redis.call('LREM', waiting, 0, job_id)
  redis.call('SREM', active, job_id)
  redis.call('LREM', rq_queue, 0, job_id)
  redis.call('DEL', rq_job)
  redis.call('HINCRBY', stats, stat_field, 1)
  redis.call('PUBLISH', channel, cjson.encode({type = 'status', status = 'canceled'}))
  return 'canceled'
end
if status == 'running' then
  redis.call('HSET', job_key, 'cancel_requested', '1')
  redis.call('PUBLISH', channel, cjson.encode({type = 'cancel_requested'}))
  return 'requested'
end
return status
"""

# KEYS: job, tenant jobs, then artifact keys. ARGV: id, channel
_DELETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' or status == 'running' then return status end
for i = 1, #KEYS do
  if i ~= 2 then redis.call('DEL', KEYS[i]) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], cjson.encode({type = 'deleted'}))
return 'deleted'
"""


def _epoch_to_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), tz=UTC)


def record_to_job(job_id: str, record: dict[str, str]) -> Job:
    status = JobStatus(record["status"])
    error = json.loads(record["error"]) if record.get("error") else None
    result = json.loads(record["result"]) if record.get("result") else None
    return Job(
        id=job_id,
        kind=record["kind"],
        model=record["model"],
        status=status,
        progress=Progress(fraction=float(record.get("fraction") or 0.0), message=record.get("message", "")),
        params=json.loads(record["params"]),
        metadata=json.loads(record["metadata"]),
        created_at=_epoch_to_datetime(record["created_at"]),
        started_at=_epoch_to_datetime(record.get("started_at")),
        finished_at=_epoch_to_datetime(record.get("finished_at")),
        expires_at=_epoch_to_datetime(record.get("expires_at")),
        attempts=int(record.get("attempts") or 0),
        timeout_seconds=int(record["timeout_seconds"]),
        cancel_requested=record.get("cancel_requested") == "1" and not status.is_terminal,
        error=JobError.model_validate(error) if error else None,
        result=JobResult.model_validate(result) if result else None,
        webhook=json.loads(record["webhook"]) if record.get("webhook") else None,
    )


def artifact_url(job_id: str, name: str) -> str:
    return f"/v1/jobs/{job_id}/artifacts/{name}"


class AsyncJobReader:
    """The API's hot reads (clients poll jobs), on the asyncio Redis client, with a cache that
    stays coherent through the job event channels.

    Every write to a job record publishes on `ns:events:{id}` in the same Lua script, so a
    process subscribed to `ns:events:*` learns of each change right after it happens and drops
    its copy. Records are cached only while that subscription is up (`run` clears the cache
    and stops caching whenever it breaks), and a record read from Redis is kept only if no event
    arrived meanwhile, so a cached record is never older than the last event delivered.
    """

    def __init__(self, connection: redis.asyncio.Redis, keys: Keys, max_entries: int = 10_000):
        self.redis = connection
        self.keys = keys
        self.max_entries = max_entries
        self._cache: dict[str, dict[str, str]] = {}
        self._events_seen = 0  # bumped on every event, to spot reads that raced one
        self.listening = False

    async def record(self, job_id: str) -> dict[str, str] | None:
        cached = self._cache.get(job_id)
        if cached is not None:
            if not cached.get("expires_at") or float(cached["expires_at"]) > time.time():
                return cached
            self._cache.pop(job_id, None)
        seen_before = self._events_seen
        raw = await self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        record = _decode(raw)
        if self.listening and self._events_seen == seen_before:
            if len(self._cache) >= self.max_entries:
                try:  # drop the oldest entry (dicts keep insertion order)
                    self._cache.pop(next(iter(self._cache)))
                except (StopIteration, RuntimeError, KeyError):
                    pass  # changed under us by `forget` from a request thread
            self._cache[job_id] = record
        return record

    async def get(self, tenant: str, job_id: str) -> Job | None:
        record = await self.record(job_id)
        if record is None or record.get("tenant") != tenant:
            return None
        return record_to_job(job_id, record)

    async def get_json(self, tenant: str, job_id: str) -> tuple[bytes, JobStatus] | None:
        """The job as the API serves it, serialized once per version of the record."""
        record = await self.record(job_id)
        if record is None or record.get("tenant") != tenant:
            return None
        cached = record.get("_json")
        if cached is None:
            cached = record_to_job(job_id, record).model_dump_json()
            if self._cache.get(job_id) is record:
                record["_json"] = cached
        return cached.encode(), JobStatus(record["status"])

    async def artifact(self, tenant: str, job_id: str, name: str) -> tuple[ArtifactRef, bytes] | None:
        """One artifact of the tenant's finished job: its reference from the (cached) record and
        its bytes, one Redis round trip in all for a job already read."""
        record = await self.record(job_id)
        if record is None or record.get("tenant") != tenant or not record.get("result"):
            return None
        refs = json.loads(record["result"]).get("artifacts", [])
        ref = next((a for a in refs if a.get("name") == name), None)
        if ref is None:
            return None
        data = await self.redis.get(self.keys.artifact(job_id, name))
        if data is None:
            return None
        return ArtifactRef.model_validate(ref), data

    def forget(self, job_id: str) -> None:
        self._events_seen += 1
        self._cache.pop(job_id, None)

    async def run(self, retry_seconds: float = 1.0) -> None:
        """Follow every job event until canceled; reconnects after Redis outages."""
        import asyncio

        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(self.keys.all_events)
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        self.forget(self.keys.job_id_of_events(_text(message["channel"])))
                    elif message["type"] == "psubscribe":
                        self.listening = True  # only from Redis's confirmation on
            except redis.RedisError:
                pass
            finally:
                self.listening = False
                self._events_seen += 1
                self._cache.clear()
                await pubsub.aclose()
            await asyncio.sleep(retry_seconds)


class JobStore:
    """Every read and transition of job records. Used by the API and by workers alike."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
        self._create = connection.register_script(_CREATE)
        self._admit = connection.register_script(_ADMIT)
        self._start = connection.register_script(_START)
        self._progress = connection.register_script(_PROGRESS)
        self._finish = connection.register_script(_FINISH)
        self._cancel = connection.register_script(_CANCEL)
        self._delete = connection.register_script(_DELETE)
        self.webhooks = WebhookOutbox(connection, settings)

    # ---- reads -------------------------------------------------------------------------

    def record(self, job_id: str) -> dict[str, str] | None:
        record = self.redis.hgetall(self.keys.job(job_id))
        return _decode(record) if record else None

    def get(self, tenant: str, job_id: str) -> Job | None:
        """The tenant's job, or None (also when it belongs to another tenant)."""
        record = self.record(job_id)
        if record is None or record.get("tenant") != tenant:
            return None
        return record_to_job(job_id, record)

    def list(
        self,
        tenant: str,
        *,
        page_size: int,
        after: str | None = None,
        status: JobStatus | None = None,
        kind: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page, newest first. A filtered page may hold fewer than `page_size` jobs; only a
        missing next token means the end."""
        index = self.keys.tenant_jobs(tenant)
        upper = f"({after}" if after else "+"
        found: list[Job] = []
        scan_budget = max(page_size * 20, 200)
        last_seen: str | None = None
        while len(found) < page_size and scan_budget > 0:
            batch = min(max(page_size * 2, 50), scan_budget)
            ids = [i.decode() for i in self.redis.zrevrangebylex(index, upper, "-", start=0, num=batch)]
            if not ids:
                return found, None
            scan_budget -= len(ids)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            records = pipe.execute()
            gone = []
            for job_id, raw in zip(ids, records, strict=True):
                last_seen = job_id
                if not raw:
                    gone.append(job_id)  # expired or deleted: drop it from the index
                    continue
                record = _decode(raw)
                if status is not None and record["status"] != status:
                    continue
                if kind is not None and record["kind"] != kind:
                    continue
                found.append(record_to_job(job_id, record))
                if len(found) == page_size:
                    break
            if gone:
                self.redis.zrem(index, *gone)
            upper = f"({last_seen}"
            if len(ids) < batch and len(found) < page_size:
                return found, None
        if last_seen is None:
            return found, None
        # Whether anything follows is only known by looking; an extra empty page is avoided.
        more = self.redis.zrevrangebylex(index, f"({last_seen}", "-", start=0, num=1)
        return found, encode_page_token(last_seen) if more else None

    # ---- client transitions -----------------------------------------------------------

    def create(
        self,
        tenant: str,
        *,
        kind: str,
        model: str,
        params: dict[str, Any],
        metadata: dict[str, Any],
        timeout_seconds: int,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        webhook: dict[str, Any] | None = None,
    ) -> CreateOutcome:
        now = time.time()
        job_id = new_job_id(now)
        fields = {
            "tenant": tenant,
            "kind": kind,
            "model": model,
            "params": json.dumps(params),
            "metadata": json.dumps(metadata),
            "status": JobStatus.queued.value,
            "fraction": "0",
            "message": "queued",
            "created_at": repr(now),
            "attempts": "0",
            "timeout_seconds": str(timeout_seconds),
        }
        if webhook is not None:
            fields["webhook"] = json.dumps(webhook)
        keys = [
            self.keys.job(job_id),
            self.keys.tenant_jobs(tenant),
            self.keys.tenant_waiting(tenant),
            self.keys.tenants_waiting,
            self.keys.idempotency(tenant, idempotency_key or ""),
            self.keys.job_stats,
            self.keys.tenants,
        ]
        args: list[Any] = [
            job_id,
            "1" if idempotency_key else "0",
            fingerprint,
            self.settings.result_ttl_seconds,
            tenant,
            self.keys.job_prefix,
            f"{kind}|queued",
        ]
        for name, value in fields.items():
            args += [name, value]
        outcome, stored_id, stored_fingerprint = (_text(v) for v in self._create(keys=keys, args=args))
        if outcome == "existing":
            return CreateOutcome(stored_id, created=False, fingerprint_matches=stored_fingerprint == fingerprint)
        self.admit(tenant)
        return CreateOutcome(job_id, created=True)

    def cancel(self, tenant: str, job_id: str) -> tuple[str, Job | None]:
        """Cancel now if queued, ask the worker if running. Returns (outcome, job after it)."""
        job = self.get(tenant, job_id)
        if job is None:
            return CancelOutcome.MISSING, None
        outcome = _text(
            self._cancel(
                keys=[
                    self.keys.job(job_id),
                    self.keys.tenant_waiting(tenant),
                    self.keys.tenant_active(tenant),
                    self.queue.key,
                    RQJob.key_for(job_id),
                    self.keys.job_stats,
                ],
                args=[job_id, repr(time.time()), self.settings.result_ttl_seconds, f"{job.kind}|canceled", self.keys.events(job_id)],
            )
        )
        after = self.get(tenant, job_id)
        if outcome == CancelOutcome.CANCELED:
            self.admit(tenant)
            self._notify(tenant, after)
        return outcome, after

    def delete(self, tenant: str, job_id: str) -> str:
        """'deleted', 'missing', or the unfinished status that prevents it."""
        job = self.get(tenant, job_id)
        if job is None:
            return "missing"
        artifact_keys = [self.keys.artifact(job_id, a.name) for a in (job.result.artifacts if job.result else [])]
        keys = [self.keys.job(job_id), self.keys.tenant_jobs(tenant), *artifact_keys]
        return _text(self._delete(keys=keys, args=[job_id, self.keys.events(job_id)]))

    # ---- admission onto RQ -----------------------------------------------------------

    def admit(self, tenant: str) -> list[str]:
        """Move the tenant's waiting jobs onto RQ while it is under its concurrency limit."""
        admitted = [
            _text(job_id)
            for job_id in self._admit(
                keys=[self.keys.tenant_waiting(tenant), self.keys.tenant_active(tenant), self.keys.tenants_waiting],
                args=[self.settings.max_concurrent_jobs_per_tenant, self.keys.job_prefix, tenant],
            )
        ]
        for job_id in admitted:
            self.enqueue(job_id)
        return admitted

    def enqueue(self, job_id: str) -> None:
        record = self.record(job_id)
        if record is None:
            return
        self.queue.enqueue_call(
            func=RUN_JOB_FUNCTION,
            args=(job_id,),
            job_id=job_id,
            timeout=int(record["timeout_seconds"]) + RQ_TIMEOUT_GRACE_SECONDS,
            result_ttl=0,
            failure_ttl=self.settings.result_ttl_seconds,
            description=f"{record['kind']} on {record['model']}",
        )

    def repair_admissions(self) -> int:
        """Re-enqueue admitted jobs that never reached RQ (a crash between admit and enqueue)
        and admit waiting jobs of tenants that have room. Returns how many were enqueued."""
        enqueued = 0
        for tenant in [_text(t) for t in self.redis.smembers(self.keys.tenants_waiting)]:
            enqueued += len(self.admit(tenant))
        for tenant in [_text(t) for t in self.redis.smembers(self.keys.tenants)]:
            key = self.keys.tenant_active(tenant)
            for job_id in [_text(i) for i in self.redis.smembers(key)]:
                record = self.record(job_id)
                if record is None:
                    self.redis.srem(key, job_id)
                elif record["status"] == JobStatus.queued and not RQJob.exists(job_id, connection=self.redis):
                    if time.time() - float(record["created_at"]) > 5:
                        self.enqueue(job_id)
                        enqueued += 1
        return enqueued

    # ---- worker transitions -----------------------------------------------------------

    def start(self, job_id: str, worker: str) -> dict[str, str] | None:
        """Claim a queued job for `worker` and return its record as it now stands; None when it
        is no longer queued (canceled, deleted, taken by another worker)."""
        outcome = self._start(
            keys=[self.keys.job(job_id), self.keys.running],
            args=[job_id, worker, repr(time.time()), self.keys.events(job_id)],
        )
        if _text(outcome) != "started":
            return None
        record = self.record(job_id)
        if record is not None and record.get("webhook"):
            self._notify(record["tenant"], record_to_job(job_id, record))
        return record

    def _notify(self, tenant: str, job: Job | None) -> None:
        """Queue the job's webhook delivery for its new status, if it asked for one."""
        if job is not None and job.webhook is not None:
            self.webhooks.queue(tenant, job.webhook.model_dump(), job.status.value, job.model_dump(mode="json"))

    def report_progress(self, job_id: str, worker: str, fraction: float, message: str) -> bool:
        """Store progress; returns whether cancel was requested. Raises OwnershipLost."""
        answer = self._progress(
            keys=[self.keys.job(job_id)],
            args=[worker, repr(min(1.0, max(0.0, float(fraction)))), message[:500], self.keys.events(job_id)],
        )
        if int(answer) < 0:
            raise OwnershipLost(job_id)
        return int(answer) == 1

    def cancel_requested(self, job_id: str, worker: str) -> bool:
        status, owner, flag = (_text(v) for v in self.redis.hmget(self.keys.job(job_id), "status", "worker", "cancel_requested"))
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
        artifacts: Sequence[ArtifactBlob] = (),
        max_attempts: int = 0,
        refund_attempt: bool = False,
    ) -> str:
        """End a running job atomically with its artifacts: 'finished', 'requeued' (when
        `max_attempts` allows another try; `refund_attempt` does not count this one) or
        'not-owner'."""
        record = self.record(job_id)
        if record is None:
            return "not-owner"
        refs = [
            ArtifactRef(
                name=a.name,
                content_type=a.content_type,
                bytes=len(a.data),
                sha256=hashlib.sha256(a.data).hexdigest(),
                url=artifact_url(job_id, a.name),
            )
            for a in artifacts
        ]
        result = JobResult(artifacts=refs, summary=summary or {}) if status == JobStatus.succeeded else None
        tenant = record["tenant"]
        outcome = _text(
            self._finish(
                keys=[
                    self.keys.job(job_id),
                    self.keys.running,
                    self.keys.tenant_active(tenant),
                    self.keys.job_stats,
                    *[self.keys.artifact(job_id, a.name) for a in artifacts],
                ],
                args=[
                    job_id,
                    worker,
                    status.value,
                    repr(time.time()),
                    self.settings.result_ttl_seconds,
                    error.model_dump_json() if error else "",
                    result.model_dump_json() if result else "",
                    f"{record['kind']}|{status.value}",
                    self.keys.events(job_id),
                    max_attempts,
                    "1" if refund_attempt else "0",
                    *[a.data for a in artifacts],
                ],
            )
        )
        if outcome == "requeued":
            self.enqueue(job_id)
        elif outcome == "finished":
            if record.get("started_at"):
                self._observe_duration(record["kind"], time.time() - float(record["started_at"]))
            self.admit(tenant)
            if record.get("webhook"):
                self._notify(tenant, self.get(tenant, job_id))
        return outcome

    def _observe_duration(self, kind: str, seconds: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for bound in JOB_DURATION_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(self.keys.duration_stats, f"{kind}|{bound}", 1)
        pipe.hincrby(self.keys.duration_stats, f"{kind}|+Inf", 1)
        pipe.hincrbyfloat(self.keys.duration_stats, f"{kind}|sum", seconds)
        pipe.execute()

    # ---- liveness ----------------------------------------------------------------------

    def heartbeat(self, worker: str) -> None:
        self.redis.zadd(self.keys.workers, {worker: time.time()})

    def forget_worker(self, worker: str) -> None:
        self.redis.zrem(self.keys.workers, worker)

    def live_workers(self) -> list[str]:
        since = time.time() - self.settings.worker_lost_after_seconds
        return [_text(w) for w in self.redis.zrangebyscore(self.keys.workers, since, "+inf")]

    def reap(self) -> dict[str, int]:
        """Settle running jobs whose worker went silent (queued again, or failed with
        `worker-lost`) and jobs far past their time limit (failed with `timeout`)."""
        now = time.time()
        lost_before = now - self.settings.worker_lost_after_seconds
        counts = {"requeued": 0, "worker_lost": 0, "timed_out": 0}
        for raw_id in self.redis.zrange(self.keys.running, 0, -1):
            job_id = _text(raw_id)
            record = self.record(job_id)
            if record is None or record.get("status") != JobStatus.running:
                self.redis.zrem(self.keys.running, job_id)
                continue
            worker = record.get("worker", "")
            beat = self.redis.zscore(self.keys.workers, worker)
            started = float(record.get("started_at") or now)
            if beat is None or beat < lost_before:
                attempts_allowed = 1 + self.settings.worker_lost_retries
                outcome = self.finish(
                    job_id,
                    worker,
                    JobStatus.failed,
                    error=JobError(
                        type="worker-lost",
                        title="The worker running this job stopped responding",
                        detail=f"worker {worker} sent no heartbeat for "
                        f"{self.settings.worker_lost_after_seconds:g} s (attempt "
                        f"{record.get('attempts')} of {attempts_allowed})",
                    ),
                    max_attempts=attempts_allowed,
                )
                if outcome == "requeued":
                    counts["requeued"] += 1
                elif outcome == "finished":
                    counts["worker_lost"] += 1
            elif now - started > int(record["timeout_seconds"]) + 2 * RQ_TIMEOUT_GRACE_SECONDS:
                outcome = self.finish(
                    job_id,
                    worker,
                    JobStatus.failed,
                    error=JobError(
                        type="timeout",
                        title="The job ran past its time limit",
                        detail=f"limit {record['timeout_seconds']} s; the worker did not stop it",
                    ),
                )
                counts["timed_out"] += outcome == "finished"
        self.redis.zremrangebyscore(self.keys.workers, "-inf", now - 24 * 3600)
        return counts

    # ---- metrics -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job_stats)
        pipe.hgetall(self.keys.duration_stats)
        pipe.llen(self.queue.key)
        pipe.zcard(self.keys.running)
        pipe.smembers(self.keys.tenants_waiting)
        jobs, durations, rq_depth, running, waiting_tenants = pipe.execute()
        waiting = sum(self.redis.llen(self.keys.tenant_waiting(_text(t))) for t in waiting_tenants)
        return {
            "jobs": {_text(k): int(v) for k, v in jobs.items()},
            "durations": {_text(k): float(v) for k, v in durations.items()},
            "queue_depth": int(rq_depth),
            "waiting": int(waiting),
            "running": int(running),
            "live_workers": len(self.live_workers()),
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _decode(record: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in record.items()}

