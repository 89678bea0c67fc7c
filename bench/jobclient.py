"""The benchmarks' jobs: created through the API, their ends read from Redis directly (a client
polling the API would load the server being measured).

`KIND` is the test plugin's lifecycle kind (tests/plugins/lifecycle.py): it does nothing but
the steps it is asked for, so a job's time is the backbone's own.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import redis

MODEL = "bench-model"
KIND = "test-lifecycle"
TERMINAL = (b"succeeded", b"failed", b"canceled")


def job_body(steps: int, step_seconds: float = 0.0, artifact_bytes: int = 16) -> dict:
    return {
        "kind": KIND,
        "model": MODEL,
        "params": {"steps": steps, "step_seconds": step_seconds, "artifact_bytes": artifact_bytes},
    }


def create_job(client: httpx.Client, body: dict) -> str:
    response = client.post("/v1/jobs", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"create failed: {response.status_code} {response.text}")
    return response.json()["id"]


def record(r: redis.Redis, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(f"glassbox:job:{job_id}").items()}


def wait_terminal(r: redis.Redis, job_id: str, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = record(r, job_id)
        if rec.get("status") in ("succeeded", "failed", "canceled"):
            return rec
        time.sleep(0.002)
    raise RuntimeError(f"job {job_id} did not finish within {timeout} s: {record(r, job_id)}")


async def _submit(base_url: str, body: dict, n: int, concurrency: int) -> list[str]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with gate:
                response = await client.post("/v1/jobs", json=body)
                if response.status_code != 202:
                    raise RuntimeError(f"create failed: {response.status_code} {response.text}")
                return response.json()["id"]

        return await asyncio.gather(*(one() for _ in range(n)))


def submit_jobs(base_url: str, body: dict, n: int, concurrency: int = 16) -> list[str]:
    """`n` jobs of `body` created at once (`concurrency` POSTs in flight); their ids."""
    return asyncio.run(_submit(base_url, body, n, concurrency))


def wait_all_terminal(r: redis.Redis, ids: list[str], timeout: float) -> list[list[bytes | None]]:
    """[status, finished_at] of every job once all have ended (read from Redis directly)."""
    deadline = time.monotonic() + timeout
    while True:
        pipe = r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(f"glassbox:job:{job_id}", "status", "finished_at")
        rows = pipe.execute()
        if all(row[0] in TERMINAL for row in rows):
            return rows
        if time.monotonic() > deadline:
            waiting = sum(row[0] not in TERMINAL for row in rows)
            raise RuntimeError(f"{waiting} of {len(ids)} jobs not finished within {timeout} s")
        time.sleep(0.02)
