"""The job lifecycle end to end: HTTP -> API process -> Redis -> worker process -> artifacts."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import httpx
import pytest

from service.catalogs import ModelCatalog
from tests.conftest import ALICE, BOB, TEST_MODEL, wait_until
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


def test_another_tenants_jobs_are_invisible(stack):
    alice, bob = stack.client(ALICE), stack.client(BOB)
    job = stack.create(alice, {"steps": 1})
    stack.wait_status(alice, job["id"], {"succeeded"})
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts/result.json"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
    ]:
        assert_problem(bob.request(method, path), 404)
    listed = bob.get("/v1/jobs", params={"page_size": 200}).json()["items"]
    assert job["id"] not in {j["id"] for j in listed}
    assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert_problem(stack.client(None).get("/v1/jobs"), 401)
    assert_problem(stack.client("wrong-key").get(f"/v1/jobs/{job['id']}"), 401)


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


def test_errors_are_problem_documents(stack):
    client = stack.client()
    too_big = client.post(
        "/v1/jobs",
        content=json.dumps({"kind": "test-lifecycle", "model": TEST_MODEL, "metadata": {"x": "a" * 70000}}),
        headers={"content-type": "application/json"},
    )
    assert_problem(too_big, 413)

    def chunks():
        for _ in range(20):
            yield b" " * 8192  # no Content-Length: the limit holds for streamed bodies too

    streamed = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413)
    assert_problem(client.post("/v1/jobs", content=b"kind=x", headers={"content-type": "text/plain"}), 415)

    unknown_kind = assert_problem(client.post("/v1/jobs", json={"kind": "nope", "model": TEST_MODEL}), 422)
    assert unknown_kind["errors"][0]["loc"] == ["body", "kind"]
    assert "test-lifecycle" in unknown_kind["errors"][0]["msg"]
    unknown_model = assert_problem(client.post("/v1/jobs", json={"kind": "test-lifecycle", "model": "nope"}), 422)
    assert unknown_model["errors"][0]["loc"] == ["body", "model"] and TEST_MODEL in unknown_model["detail"]
    bad_params = assert_problem(
        client.post("/v1/jobs", json={"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": -1}}), 422
    )
    assert bad_params["errors"][0]["loc"] == ["body", "params", "steps"]
    assert assert_problem(client.post("/v1/jobs", json={"model": TEST_MODEL}), 422)["errors"]
    assert_problem(client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_problem(client.get("/v1/jobs", params={"page_token": "garbage"}), 422)
    assert_problem(client.get("/v1/jobs", params={"status": "sleeping"}), 422)
    assert_problem(client.get("/v1/nothing-here"), 404)
    wrong_method = client.put("/v1/jobs")
    assert_problem(wrong_method, 405)
    assert wrong_method.headers["Allow"] == "GET, HEAD, POST"  # every route of the path; HEAD wherever GET is


def test_listing_is_newest_first_and_pages_without_duplicates_or_gaps_under_concurrent_creates(make_stack):
    stack = make_stack(workers=0)  # jobs stay queued: listing only
    # No worker runs here to register the test model: write the record one would.
    ModelCatalog(stack.redis, stack.settings).put("builtin", TEST_MODEL, {"id": TEST_MODEL})
    client = stack.client()
    existing = [stack.create(client, {"steps": 1})["id"] for _ in range(30)]
    stop = threading.Event()
    created_during = []

    def create_more():
        other = stack.client()
        while not stop.is_set() and len(created_during) < 40:
            created_during.append(stack.create(other, {"steps": 1})["id"])

    writer = threading.Thread(target=create_more)
    writer.start()
    seen, token = [], None
    while True:
        params = {"page_size": 7, **({"page_token": token} if token else {})}
        page = client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        token = page["next_page_token"]
        time.sleep(0.02)
        if token is None:
            break
    stop.set()
    writer.join()
    assert len(seen) == len(set(seen)), "a job appeared on two pages"
    assert set(existing) <= set(seen), "a job that existed before paging began was skipped"
    assert seen == sorted(seen, reverse=True)
    everything = client.get("/v1/jobs", params={"page_size": 200}).json()["items"]
    assert [j["id"] for j in everything] == sorted(existing + created_during, reverse=True)

    client.post(f"/v1/jobs/{existing[0]}/cancel")
    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()["items"]
    assert [j["id"] for j in canceled] == [existing[0]]
    assert client.get("/v1/jobs", params={"kind": "other-kind"}).json() == {"items": [], "next_page_token": None}


def test_a_tenant_never_runs_more_than_its_limit_and_does_not_block_others(make_stack):
    stack = make_stack(workers=3, max_concurrent_jobs_per_tenant=1)
    alice, bob = stack.client(ALICE), stack.client(BOB)
    alices = [stack.create(alice, {"steps": 10, "step_seconds": 0.05})["id"] for _ in range(3)]
    bobs = stack.create(bob, {"steps": 10, "step_seconds": 0.05})["id"]
    bob_ran_beside_alice = False
    while True:
        states = [alice.get(f"/v1/jobs/{i}").json()["status"] for i in alices]
        bob_state = bob.get(f"/v1/jobs/{bobs}").json()["status"]
        assert states.count("running") <= 1, states
        bob_ran_beside_alice |= bob_state == "running" and "running" in states
        if all(s == "succeeded" for s in states) and bob_state == "succeeded":
            break
        time.sleep(0.02)
    assert bob_ran_beside_alice
    # Queued jobs waited in creation order.
    started = [alice.get(f"/v1/jobs/{i}").json()["started_at"] for i in alices]
    assert started == sorted(started)


def test_metrics_count_jobs_by_kind_and_status_and_requests_by_route(stack):
    client = stack.client()
    job = stack.create(client, {"steps": 1})
    stack.wait_status(client, job["id"], {"succeeded"})
    text = client.get("/metrics").text
    succeeded = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('glassbox_jobs_total{kind="test-lifecycle",status="succeeded"}')
    ]
    assert succeeded and succeeded[0] >= 1
    assert 'route="/v1/jobs/{job_id}"' in text
    assert "glassbox_queue_depth" in text and "glassbox_job_duration_seconds_bucket" in text
    assert "glassbox_workers_alive 1.0" in text


def test_health_endpoints(stack):
    assert httpx.get(f"{stack.base_url}/livez").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1


def test_kinds_are_listed_with_their_params_schema(stack):
    kinds = stack.client().get("/v1/kinds").json()
    lifecycle = next(k for k in kinds if k["name"] == "test-lifecycle")
    assert lifecycle["params_schema"]["properties"]["steps"]["minimum"] == 0


def test_changes_made_through_another_api_replica_are_seen_at_once(make_stack):
    """The API caches job records; the job event channels keep that cache coherent."""
    from service.jobstore import JobStore

    stack = make_stack(workers=0)
    ModelCatalog(stack.redis, stack.settings).put("builtin", TEST_MODEL, {"id": TEST_MODEL})
    client = stack.client()
    other_replica = JobStore(stack.redis, stack.settings)
    job_id = stack.create(client, {"steps": 1})["id"]
    for _ in range(3):  # read it a few times: it is cached now
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    other_replica.cancel("alice", job_id)
    seen = wait_until(
        lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled", timeout=0.5, what="the cancel"
    )
    assert seen
    other_replica.delete("alice", job_id)
    wait_until(lambda: client.get(f"/v1/jobs/{job_id}").status_code == 404, timeout=0.5, what="the delete")


def test_hostile_bodies_get_a_4xx_and_leave_nothing_behind(stack):
    client = stack.client()
    before = stack.redis.zcard(f"{stack.namespace}:tenant:alice:jobs")
    headers = {"content-type": "application/json"}
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"kind": "test-lifecycle", "model": "test-model", "metadata": {"x": [1, ' + literal + b"]}}"
        problem = assert_problem(client.post("/v1/jobs", content=body, headers=headers), 422)
        assert "metadata.x[1]" in problem["detail"] and "finite" in problem["detail"]
    deep = b'{"kind": "test-lifecycle", "model": "test-model", "metadata": {"a": ' + b"[" * 50000 + b"]" * 50000 + b"}}"
    response = client.post("/v1/jobs", content=deep, headers=headers)
    assert 400 <= response.status_code < 500 and response.headers["content-type"].startswith(PROBLEM)
    huge = {"kind": "test-lifecycle", "model": "test-model", "params": {"steps": 10**12}}
    assert "100000" in assert_problem(client.post("/v1/jobs", json=huge), 422)["detail"]
    weird = client.post("/v1/jobs", json={"kind": "te\u0000st\u202e", "model": "test-model"})
    assert assert_problem(weird, 422)["errors"][0]["loc"] == ["body", "kind"]
    assert stack.redis.zcard(f"{stack.namespace}:tenant:alice:jobs") == before
