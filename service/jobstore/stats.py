"""Deployment-wide job counts and durations, kept in Redis so every API replica reports the same."""

from __future__ import annotations

import time
from typing import Any

import redis

from service.jobstore.record import _text
from service.keys import Keys

JOB_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def duration_fields(kind: str, seconds: float) -> list[str]:
    """The histogram buckets (fields of `keys.duration_stats`) a run of `seconds` counts in; the
    FINISH script increments them, and adds the seconds to `{kind}|sum`."""
    return [f"{kind}|{bound}" for bound in JOB_DURATION_BUCKETS if seconds <= bound] + [f"{kind}|+Inf"]


def job_stats(connection: redis.Redis, keys: Keys, queue_key: str, worker_lost_after_seconds: float) -> dict[str, Any]:
    """Counts by `kind|status`, durations by `kind|bucket`, queue depths, running jobs, live workers."""
    pipe = connection.pipeline(transaction=False)
    pipe.hgetall(keys.job_stats)
    pipe.hgetall(keys.duration_stats)
    pipe.llen(queue_key)
    pipe.zcard(keys.running)
    pipe.smembers(keys.tenants_waiting)
    pipe.zcount(keys.workers, time.time() - worker_lost_after_seconds, "+inf")
    jobs, durations, rq_depth, running, waiting_tenants, live = pipe.execute()
    waiting = sum(connection.llen(keys.tenant_waiting(_text(t))) for t in waiting_tenants)
    return {
        "jobs": {_text(k): int(v) for k, v in jobs.items()},
        "durations": {_text(k): float(v) for k, v in durations.items()},
        "queue_depth": int(rq_depth),
        "waiting": int(waiting),
        "running": int(running),
        "live_workers": int(live),
    }
