"""What the job API refuses, each as a problem document: every kind of error (too big, wrong
type, unknown kind or model, bad params, bad query, unknown route or method), hostile JSON
bodies (non-finite numbers, deep nesting, huge values, control characters; nothing is left
behind), and another tenant's jobs (404, as if they did not exist)."""

from __future__ import annotations

import json

from tests.conftest import ALICE, BOB, TEST_MODEL
from tests.e2e.test_jobs_api import PROBLEM, assert_problem


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
