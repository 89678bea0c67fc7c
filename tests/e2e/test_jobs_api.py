"""The job lifecycle end to end: HTTP -> API process -> Redis -> worker process -> artifacts.

Also `assert_problem`, the check of a problem+json answer that the other API tests import.
What the job API refuses is in tests/e2e/test_jobs_api_refusals.py; listing, per-tenant limits,
replicas and the operators' endpoints in tests/e2e/test_jobs_api_listing_and_operations.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import httpx
import pytest

from tests.conftest import BOB, TEST_MODEL, wait_until
from tests.plugins.lifecycle_tasks import artifact_payload

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"]
    assert "detail" in body
    return body


def test_job_goes_queued_running_succeeded_with_progress_and_artifacts(stack):
    client = stack.client()
    response = client.post(
        "/v1/jobs",
        json={"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 25, "step_seconds": 0.04},
              "metadata": {"run": "r1"}},
    )
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert job["status"] == "queued" and job["metadata"] == {"run": "r1"}
    # The resolved params, defaults included, are what the job runs with.
    assert job["params"] == {"steps": 25, "step_seconds": 0.04, "outcome": "succeed", "artifact_bytes": 1024}

    seen = []
    while True:
        current = client.get(f"/v1/jobs/{job['id']}").json()
        seen.append((current["status"], current["progress"]["fraction"]))
        if current["status"] not in ("queued", "running"):
            break
        time.sleep(0.01)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "succeeded"
    order = {"queued": 0, "running": 1, "succeeded": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    running_fractions = [f for s, f in seen if s == "running"]
    assert any(0 < f < 1 for f in running_fractions), seen
    assert running_fractions == sorted(running_fractions)

    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["progress"]["fraction"] == 1.0 and final["attempts"] == 1
    assert final["started_at"] >= final["created_at"] and final["finished_at"] >= final["started_at"]
    assert final["expires_at"] > final["finished_at"]
    assert "Retry-After" not in client.get(f"/v1/jobs/{job['id']}").headers
    artifacts = {a["name"]: a for a in final["result"]["artifacts"]}
    assert set(artifacts) == {"result.json", "payload.bin"}
    payload = client.get(artifacts["payload.bin"]["url"])
    assert payload.status_code == 200
    assert payload.content == artifact_payload(job["id"], 1024)
    assert artifacts["payload.bin"]["sha256"] == hashlib.sha256(payload.content).hexdigest()
    assert artifacts["payload.bin"]["bytes"] == 1024
    assert client.get(artifacts["result.json"]["url"]).json() == {"steps": 25, "job_id": job["id"]}


def parse_sse(lines) -> list[tuple[str, dict]]:
    events, name, data = [], None, []
    for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and name:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


def test_event_stream_delivers_progress_and_the_terminal_event(stack):
    client = stack.client()
    job = stack.create(client, {"steps": 20, "step_seconds": 0.05})
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.iter_lines())  # returns when the server ends the stream
    assert events[0][0] == "status"
    assert events[-1][0] == "status" and events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["result"]["artifacts"]
    progress = [data["fraction"] for name, data in events if name == "progress"]
    assert len(progress) >= 2 and progress == sorted(progress) and all(0 < f <= 1 for f in progress)
    statuses = [data["status"] for name, data in events if name == "status"]
    assert "running" in statuses


def test_progress_is_throttled(stack):
    client = stack.client()
    job_id = stack.create(client, {"steps": 400, "step_seconds": 0.0025})["id"]
    pubsub = stack.redis.pubsub()
    pubsub.subscribe(f"{stack.namespace}:events:{job_id}")
    messages = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message:
            event = json.loads(message["data"])
            messages.append((time.monotonic(), event))
            if event.get("status") == "succeeded":
                break
    pubsub.close()
    progress_times = [t for t, e in messages if e["type"] == "progress"]
    assert messages[-1][1] == {"type": "status", "status": "succeeded"}
    # 400 steps took at least a second; the interval is 0.1 s: far fewer writes than steps.
    span = progress_times[-1] - progress_times[0]
    assert 2 <= len(progress_times) <= span / 0.1 + 3, (len(progress_times), span)


def test_cancel_of_a_queued_job_is_immediate_and_of_a_running_job_takes_effect_at_its_next_step(stack):
    client = stack.client()
    blocker = stack.create(client, {"steps": 200, "step_seconds": 0.05})
    stack.wait_status(client, blocker["id"], {"running"})
    queued = stack.create(client, {"steps": 1})
    response = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    assert client.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "canceled"  # idempotent

    response = client.post(f"/v1/jobs/{blocker['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    requested_at = time.monotonic()
    final = stack.wait_status(client, blocker["id"], {"canceled", "succeeded", "failed"}, timeout=10)
    assert final["status"] == "canceled"
    assert time.monotonic() - requested_at < 2.0
    assert 0 < final["progress"]["fraction"] < 1

    # The canceled queued job never ran, even once the worker was free.
    follow_up = stack.create(client, {"steps": 1})
    stack.wait_status(client, follow_up["id"], {"succeeded"})
    never_ran = client.get(f"/v1/jobs/{queued['id']}").json()
    assert never_ran["status"] == "canceled" and never_ran["attempts"] == 0 and never_ran["started_at"] is None
    done = client.post(f"/v1/jobs/{follow_up['id']}/cancel")
    assert_problem(done, 409)


def test_time_limit_fails_the_job_with_type_timeout(stack):
    client = stack.client()
    job = stack.create(client, {"steps": 1000, "step_seconds": 0.05}, timeout_seconds=1)
    final = stack.wait_status(client, job["id"], {"failed", "succeeded"}, timeout=15)
    assert final["status"] == "failed"
    assert final["error"]["type"] == "timeout"
    started = final["started_at"]
    assert final["finished_at"] > started
    too_long = client.post(
        "/v1/jobs", json={"kind": "test-lifecycle", "model": TEST_MODEL, "timeout_seconds": 10**9}
    )
    body = assert_problem(too_long, 422)
    assert body["errors"][0]["loc"] == ["body", "timeout_seconds"]


@pytest.mark.parametrize(
    ("outcome", "type_", "title_part"),
    [("fail", "job-error", "Asked to fail"), ("raise", "job-error", "ValueError")],
)
def test_failing_jobs_report_a_typed_error(stack, outcome, type_, title_part):
    client = stack.client()
    job = stack.create(client, {"steps": 1, "outcome": outcome})
    final = stack.wait_status(client, job["id"], {"failed", "succeeded"})
    assert final["status"] == "failed"
    assert final["error"]["type"] == type_ and title_part in final["error"]["title"]
    assert final["result"] is None


def test_idempotency_key_replays_the_same_job_and_refuses_another_body(stack):
    client = stack.client()
    body = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 1}}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(
        "/v1/jobs", json={**body, "params": {"steps": 2}}, headers={"Idempotency-Key": "abc-1"}
    )
    problem = assert_problem(other, 422)
    assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    # Keys belong to a tenant: bob's identical request makes bob's own job.
    bobs = stack.client(BOB).post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc-1"})
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]
    # Concurrent retries of one request make exactly one job.
    ids = set()
    threads = [
        threading.Thread(
            target=lambda: ids.add(
                stack.client().post("/v1/jobs", json=body, headers={"Idempotency-Key": "race"}).json()["id"]
            )
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 1


def test_delete_forgets_a_finished_job_and_its_artifacts_but_refuses_an_unfinished_one(stack):
    client = stack.client()
    job = stack.create(client, {"steps": 1})
    stack.wait_status(client, job["id"], {"succeeded"})
    files = stack.blob_store()
    assert len(list(files.list_blobs(f"artifacts/{job['id']}"))) == 2
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 404)
    assert_problem(client.get(f"/v1/jobs/{job['id']}/artifacts/result.json"), 404)
    # The files go at the next sweep of the elected reaper (every GLASSBOX_REAPER_INTERVAL_SECONDS).
    wait_until(lambda: not list(files.list_blobs(f"artifacts/{job['id']}")), timeout=10, what="the files to be deleted")
    assert job["id"] not in {j["id"] for j in client.get("/v1/jobs", params={"page_size": 200}).json()["items"]}

    running = stack.create(client, {"steps": 100, "step_seconds": 0.05})
    stack.wait_status(client, running["id"], {"running"})
    assert_problem(client.delete(f"/v1/jobs/{running['id']}"), 409)
    client.post(f"/v1/jobs/{running['id']}/cancel")
    stack.wait_status(client, running["id"], {"canceled"})
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 204


def test_artifacts_have_a_strong_etag_and_answer_if_none_match_with_304(stack):
    client = stack.client()
    job = stack.create(client, {"steps": 1, "artifact_bytes": 5000})
    final = stack.wait_status(client, job["id"], {"succeeded"})
    ref = next(a for a in final["result"]["artifacts"] if a["name"] == "payload.bin")
    first = client.get(ref["url"])
    assert first.headers["ETag"] == f'"{hashlib.sha256(first.content).hexdigest()}"'
    assert "immutable" in first.headers["Cache-Control"] and "private" in first.headers["Cache-Control"]
    assert first.headers["content-type"] == "application/octet-stream"
    cached = client.get(ref["url"], headers={"If-None-Match": first.headers["ETag"]})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == first.headers["ETag"]
    stale = client.get(ref["url"], headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == first.content
    assert_problem(client.get(f"/v1/jobs/{job['id']}/artifacts/missing.bin"), 404)
