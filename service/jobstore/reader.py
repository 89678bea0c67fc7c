"""The API's hot reads (clients poll jobs), on the asyncio Redis client, with a cache kept
coherent through the job event channels.

Every write to a job record publishes on `ns:events:{id}` in the same Lua script, so a process
subscribed to `ns:events:*` learns of each change right after it happens and drops its copy.
Records are cached only while that subscription is up (`run` clears the cache and stops caching
whenever it breaks), and a record read from Redis is kept only if no event arrived meanwhile,
so a cached record is never older than the last event delivered.
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio

from service.jobspec import ArtifactRef, JobStatus
from service.jobstore.record import JobRecord, _text
from service.keys import Keys


class AsyncJobReader:
    def __init__(self, connection: redis.asyncio.Redis, keys: Keys, max_entries: int = 10_000):
        self.redis = connection
        self.keys = keys
        self.max_entries = max_entries
        self._cache: dict[str, JobRecord] = {}
        self._events_seen = 0  # bumped on every event, to spot reads that raced one
        self.listening = False

    async def record(self, job_id: str) -> JobRecord | None:
        cached = self._cache.get(job_id)
        if cached is not None:
            if not cached.is_expired(time.time()):
                return cached
            self._cache.pop(job_id, None)
        seen_before = self._events_seen
        raw = await self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        record = JobRecord.from_redis(job_id, raw)
        if self.listening and self._events_seen == seen_before:
            if len(self._cache) >= self.max_entries:
                try:  # drop the oldest entry (dicts keep insertion order)
                    self._cache.pop(next(iter(self._cache)))
                except (StopIteration, RuntimeError, KeyError):
                    pass  # changed under us by `forget` from a request thread
            self._cache[job_id] = record
        return record

    async def tenant_record(self, tenant: str, job_id: str) -> JobRecord | None:
        record = await self.record(job_id)
        return record if record is not None and record.tenant == tenant else None

    async def get_json(self, tenant: str, job_id: str) -> tuple[bytes, JobStatus] | None:
        """The job as the API serves it, serialized once per version of the record."""
        record = await self.tenant_record(tenant, job_id)
        if record is None:
            return None
        body = record.cached_json
        if body is None:
            body = record.job_json()
            if self._cache.get(job_id) is record:
                record.cached_json = body
        return body, record.status

    async def artifact(self, tenant: str, job_id: str, name: str) -> tuple[ArtifactRef, str | None] | None:
        """One artifact of the tenant's finished job: its reference from the (cached) record and
        its blob-store key (None for a job of before the blob store: `legacy_artifact` reads it)."""
        record = await self.tenant_record(tenant, job_id)
        ref = record.artifact(name) if record is not None else None
        if ref is None:
            return None
        return ref, record.artifact_key(name)

    async def legacy_artifact(self, job_id: str, name: str) -> bytes | None:
        """An artifact kept in Redis by a version before the blob store, until its job expires."""
        return await self.redis.get(self.keys.artifact(job_id, name))

    def forget(self, job_id: str) -> None:
        self._events_seen += 1
        self._cache.pop(job_id, None)

    async def run(self, retry_seconds: float = 1.0) -> None:
        """Follow every job event until canceled; reconnects after Redis outages."""
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
