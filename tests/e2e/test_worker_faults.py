"""What happens to jobs when workers die, stop, or hit a broken GPU, and when Redis goes away."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.conftest import RedisProcess, wait_until


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (append-only file on), to stop and start again."""
    server = RedisProcess(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


def running_job_of_a_killed_worker(stack, client) -> dict:
    """A 20 s job, running, whose worker is then SIGKILLed."""
    job = stack.create(client, {"steps": 400, "step_seconds": 0.05})
    stack.wait_status(client, job["id"], {"running"})
    stack.workers[0].send_signal(signal.SIGKILL)
    return job


def test_a_job_of_a_sigkilled_worker_is_queued_again_once_then_fails_with_worker_lost(make_stack):
    stack = make_stack(workers=1, worker_lost_retries=1)
    client = stack.client()
    job = running_job_of_a_killed_worker(stack, client)
    killed_at = time.monotonic()
    stack.start_worker(wait=False)
    # The replacement takes the job over once the dead worker's silence is noticed.
    again = wait_until(
        lambda: (j := client.get(f"/v1/jobs/{job['id']}").json())["attempts"] == 2 and j["status"] == "running" and j,
        timeout=60,
        what="the job to run again",
    )
    assert time.monotonic() - killed_at < 90
    assert again["progress"]["fraction"] < 0.5
    stack.workers[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    final = stack.wait_status(client, job["id"], {"failed", "succeeded"}, timeout=90)
    assert time.monotonic() - killed_at < 90
    assert final["status"] == "failed"
    assert final["error"]["type"] == "worker-lost"
    assert "attempt 2 of 2" in final["error"]["detail"]


def test_the_api_alone_settles_a_lost_job_when_no_worker_is_left(make_stack):
    stack = make_stack(workers=1, worker_lost_retries=0)
    client = stack.client()
    job = running_job_of_a_killed_worker(stack, client)
    final = stack.wait_status(client, job["id"], {"failed", "succeeded"}, timeout=30)
    assert final["status"] == "failed" and final["error"]["type"] == "worker-lost"
    assert final["attempts"] == 1
    # Nothing is left counted as running or holding the tenant's slot.
    assert stack.redis.zcard(f"{stack.namespace}:running") == 0
    assert stack.redis.scard(f"{stack.namespace}:tenant:alice:active") == 0


def test_a_worker_stopped_with_sigterm_puts_its_running_job_back_for_another_worker(make_stack):
    stack = make_stack(workers=1)
    client = stack.client()
    job = stack.create(client, {"steps": 60, "step_seconds": 0.05})
    stack.wait_status(client, job["id"], {"running"})
    stack.workers[0].send_signal(signal.SIGTERM)
    assert stack.workers[0].wait(15) == 0
    back = client.get(f"/v1/jobs/{job['id']}").json()
    assert back["status"] == "queued" and back["attempts"] == 0
    stack.start_worker()
    final = stack.wait_status(client, job["id"], {"succeeded", "failed"}, timeout=30)
    assert final["status"] == "succeeded" and final["attempts"] == 1


def test_an_unrecoverable_device_error_fails_the_job_and_ends_the_worker_process(make_stack):
    stack = make_stack(workers=1)
    client = stack.client()
    job = stack.create(client, {"steps": 1, "outcome": "device_error"})
    final = stack.wait_status(client, job["id"], {"failed", "succeeded"})
    assert final["error"]["type"] == "device-error"
    assert "illegal memory access" in final["error"]["detail"]
    assert stack.workers[0].wait(15) == 3  # for its supervisor to restart it
    # A fresh worker takes new jobs.
    stack.start_worker()
    after = stack.create(client, {"steps": 1})
    assert stack.wait_status(client, after["id"], {"succeeded", "failed"})["status"] == "succeeded"


def test_redis_down_gives_503_with_retry_after_and_the_service_recovers_by_itself(make_stack, own_redis):
    server = own_redis
    stack = make_stack(workers=1, url=server.url)
    client = stack.client()
    job = stack.create(client, {"steps": 1})
    stack.wait_status(client, job["id"], {"succeeded"})
    server.stop()
    for method, path, body in [
        ("GET", f"/v1/jobs/{job['id']}", None),
        ("GET", "/v1/jobs", None),
        ("POST", "/v1/jobs", {"kind": "test-lifecycle", "model": "test-model"}),
        ("GET", f"/v1/jobs/{job['id']}/artifacts/result.json", None),
        ("GET", f"/v1/jobs/{job['id']}/events", None),
        ("GET", "/readyz", None),
    ]:
        # A record the API holds in its cache may be served until it notices Redis is gone.
        response = wait_until(
            lambda m=method, p=path, b=body: (r := client.request(m, p, json=b)).status_code == 503 and r,
            timeout=10,
            what=path,
        )
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["Retry-After"]) > 0
    assert client.get("/livez").status_code == 200
    server.start()
    recovered = wait_until(
        lambda: client.get(f"/v1/jobs/{job['id']}").status_code == 200, timeout=20, what="recovery"
    )
    assert recovered
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    # The worker reconnected too: a new job runs.
    later = stack.create(client, {"steps": 1})
    assert stack.wait_status(client, later["id"], {"succeeded", "failed"}, timeout=60)["status"] == "succeeded"
    assert httpx.get(f"{stack.base_url}/readyz").status_code == 200


def test_a_job_admitted_but_never_handed_to_rq_is_enqueued_again(make_stack):
    """An admitted job that RQ does not know (admitted by a version that queued it on RQ in a
    second step, and crashed in between; a create now does both in one script) is not lost."""
    from rq.job import Job as RQJob

    from service.jobstore import JobStore

    stack = make_stack(workers=0)
    store = JobStore(stack.redis, stack.settings)
    outcome = store.create(
        "alice", kind="test-lifecycle", model="test-model", params={"steps": 1, "step_seconds": 0.0,
        "outcome": "succeed", "artifact_bytes": 8}, metadata={}, timeout_seconds=60,
    )  # fmt: skip
    stack.redis.delete(RQJob.key_for(outcome.job_id))  # as if never handed to RQ
    stack.redis.lrem(store.queue.key, 0, outcome.job_id)
    client = stack.client()
    assert client.get(f"/v1/jobs/{outcome.job_id}").json()["status"] == "queued"
    stack.start_worker()
    final = stack.wait_status(client, outcome.job_id, {"succeeded", "failed"}, timeout=30)
    assert final["status"] == "succeeded"


def test_a_job_running_through_a_redis_restart_is_queued_again_and_finishes(make_stack, own_redis):
    server = own_redis
    stack = make_stack(workers=1, url=server.url)
    client = stack.client()
    job = stack.create(client, {"steps": 60, "step_seconds": 0.05})
    stack.wait_status(client, job["id"], {"running"})
    server.stop()  # graceful: the append-only file keeps every accepted write
    time.sleep(2)
    server.start()
    final = wait_until(
        lambda: (r := client.get(f"/v1/jobs/{job['id']}")).status_code == 200
        and r.json()["status"] in ("succeeded", "failed")
        and r.json(),
        timeout=90,
        what="the job to end after the Redis restart",
    )
    assert final["status"] == "succeeded", final["error"]
    assert final["attempts"] == 1  # the interrupted try was not counted