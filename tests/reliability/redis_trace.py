"""The trace a request could leave: every key of a stack's Redis namespace and of RQ's
bookkeeping for its queue, by content, and the tenants' job, model and dataset lists.

Two snapshots compare equal when a request left nothing behind; `describe_difference` names
what changed when they do not.
"""

from __future__ import annotations

import time
from hashlib import sha256
from typing import Any

import httpx

from tests.conftest import Stack


def _dump(connection, key: bytes) -> Any:
    kind = connection.type(key).decode()
    if kind == "string":
        return kind, sha256(connection.get(key) or b"").hexdigest()
    if kind == "hash":
        return kind, sorted(connection.hgetall(key).items())
    if kind == "list":
        return kind, connection.lrange(key, 0, -1)
    if kind == "set":
        return kind, sorted(connection.smembers(key))
    if kind == "zset":
        return kind, connection.zrange(key, 0, -1, withscores=True)
    return kind, None  # "none": expired between SCAN and TYPE


def redis_state(stack: Stack) -> dict[str, Any]:
    """Every key of the stack's namespace and of RQ's bookkeeping for its queue, by content.

    Left out, because they change by themselves while nothing is requested:
      - `{ns}:workers`: the workers' heartbeat times (a sorted set rewritten every 0.5 s);
      - `{ns}:reaper-lock`: taken, and let expire, every reaper interval by the process elected;
      - `rq:workers:{queue}`, `rq:worker:*`, `rq:workers`, `rq:clean_registries:{queue}`,
        `rq:clean_groups`: RQ's worker registrations, heartbeats and housekeeping markers.
    There is nothing else to leave out: request metrics are Prometheus counters inside the API
    process (not in Redis), and the service keeps no rate-limit windows.
    Kept, among the rest: `{ns}:job:*`, `{ns}:tenant:*` (job index, waiting list, active set),
    `{ns}:tenants*`, `{ns}:idem:*`, `{ns}:artifact:*`, `{ns}:blob:*`, `{ns}:models:*`,
    `{ns}:datasets:*`, `{ns}:stats:*`, `{ns}:webhooks:*`; and for RQ `rq:queue:{queue}`, its
    registries (`rq:wip:`, `rq:finished:`, `rq:failed:`, `rq:deferred:`, `rq:scheduled:`,
    `rq:canceled:` + queue) and every `rq:job:*` whose origin is the queue.
    """
    ns, queue, connection = stack.namespace, stack.settings.queue_name, stack.redis
    state: dict[str, Any] = {}
    for key in connection.scan_iter(match=f"{ns}:*", count=1000):
        if key.decode() not in (f"{ns}:workers", f"{ns}:reaper-lock"):
            state[key.decode()] = _dump(connection, key)
    for key in connection.scan_iter(match="rq:*", count=1000):
        name = key.decode()
        if name.startswith("rq:job:"):
            job_hash = ":".join(name.split(":")[:3])  # rq:job:{id}, also for its :dependents and the like
            if connection.type(job_hash) != b"hash" or connection.hget(job_hash, "origin") != queue.encode():
                continue
        elif not name.endswith(f":{queue}") or name.startswith(("rq:workers:", "rq:clean_registries:")):
            continue
        state[name] = _dump(connection, key)
    state["rq:queues holds the queue"] = connection.sismember("rq:queues", f"rq:queue:{queue}")
    return state


def api_lists(clients: dict[str, httpx.Client]) -> dict[str, Any]:
    lists = {}
    for tenant, client in clients.items():
        for path in ("/v1/jobs?page_size=200", "/v1/models", "/v1/datasets"):
            response = client.get(path)
            assert response.status_code == 200, (tenant, path, response.text[:300])
            lists[f"{tenant} {path}"] = response.json()
    return lists


def snapshot(stack: Stack, clients: dict[str, httpx.Client], pause: float = 0) -> dict[str, Any]:
    time.sleep(pause)
    return {"redis": redis_state(stack), "lists": api_lists(clients)}


def describe_difference(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = []
    for part in ("redis", "lists"):
        old, new = before[part], after[part]
        lines += [f"{part}: added {k}" for k in sorted(set(new) - set(old))]
        lines += [f"{part}: removed {k}" for k in sorted(set(old) - set(new))]
        lines += [f"{part}: changed {k}" for k in sorted(set(old) & set(new)) if old[k] != new[k]]
    return "; ".join(lines) or "no difference"
