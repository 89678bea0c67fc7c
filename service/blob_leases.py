"""Who owns which files in the blob store, and until when: the record that keeps blobs and Redis
records in step, so that no record points at nothing and no blob outlives its owner for long.

Every group of blobs lives under one prefix (a job's artifacts `artifacts/{job}/{token}`, an
upload `models/{scope}/{id}/{token}`). A prefix is held in the sorted set `ns:blob-leases`
(member: the prefix, score: when its blobs may be deleted) from before its first byte is
written:
- while being written: a lease that ends some time after the writer would have finished;
  a writer that dies leaves blobs that the sweeper deletes once the lease ends;
- once published by a record: the record's own expiry (a job's result TTL, set in the same Lua
  script that publishes the job), or no lease at all for records that live until deleted
  (uploads: the prefix leaves the set when the record is written);
- once its owner is deleted: score 0, deleted at the next sweep.

The sweep runs in the elected reaper (service/jobstore/reaper.py), so one process per interval
deletes what is due.
"""

from __future__ import annotations

import logging
import time

import redis

from service.keys import Keys
from service.storage import BlobStore

log = logging.getLogger("glassbox.blobs")

SWEEP_BATCH = 200


class BlobLeases:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.redis = connection
        self.key = keys.blob_leases

    def hold(self, prefix: str, seconds: float) -> None:
        """Before writing under `prefix`: its blobs may be deleted `seconds` from now unless a
        record publishes them first."""
        self.redis.zadd(self.key, {prefix: time.time() + seconds})

    def keep(self, prefix: str) -> None:
        """A record that lives until deleted now owns `prefix`: no lease."""
        self.redis.zrem(self.key, prefix)

    def release(self, prefix: str) -> None:
        """The owner is gone: delete the blobs at the next sweep."""
        self.redis.zadd(self.key, {prefix: 0})

    def due(self, now: float | None = None, limit: int = SWEEP_BATCH) -> list[str]:
        ends = time.time() if now is None else now
        return [p.decode() if isinstance(p, bytes) else p for p in self.redis.zrangebyscore(self.key, "-inf", ends, 0, limit)]

    def sweep(self, store: BlobStore, now: float | None = None) -> int:
        """Delete the blobs of every prefix whose lease has ended; returns how many blobs."""
        deleted = 0
        for prefix in self.due(now):
            try:
                deleted += store.delete_prefix(prefix)
            except Exception:
                log.exception("could not delete the blobs under %s; trying again at the next sweep", prefix)
                continue
            if self._still_due(prefix, now):  # not held again meanwhile
                self.redis.zrem(self.key, prefix)
        return deleted

    def _still_due(self, prefix: str, now: float | None) -> bool:
        score = self.redis.zscore(self.key, prefix)
        return score is not None and score <= (time.time() if now is None else now)
