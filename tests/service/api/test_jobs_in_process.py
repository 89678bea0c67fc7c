"""The /v1/jobs contract, in process: each answer and each transition a client sees."""

from __future__ import annotations

import hashlib

import anyio
import pytest

from service.jobspec import JobStatus
from service.jobstore import ArtifactBlob

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


async def test_create_answers_202_with_location_and_retry_after_and_the_job_reads_back(api):
    response = await api.alice.post("/v1/jobs", json={"kind": "test-lifecycle", "model": "test-model", "metadata": {"run": 1}})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" and response.headers["retry-after"] == "1"
    assert (job["status"], job["metadata"], job["progress"]["fraction"]) == ("queued", {"run": 1}, 0.0)
    again = await api.alice.get(f"/v1/jobs/{job['id']}")
    assert again.json() == job and again.headers["retry-after"] == "1"
    listed = (await api.alice.get("/v1/jobs")).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]] and listed["next_page_token"] is None
    assert (await api.bob.get(f"/v1/jobs/{job['id']}")).status_code == 404


async def test_an_idempotency_key_replays_the_job_and_refuses_another_body(api):
    body = {"kind": "test-lifecycle", "model": "test-model", "params": {"steps": 2}}
    first = await api.alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    replay = await api.alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert replay.json()["id"] == first.json()["id"] and replay.headers["idempotent-replayed"] == "true"
    other = await api.alice.post("/v1/jobs", json={**body, "params": {"steps": 3}}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")


async def test_bad_requests_are_422_problems_naming_the_field_and_the_allowed_values(api):
    kind = await api.alice.post("/v1/jobs", json={"kind": "nope", "model": "test-model"})
    assert kind.status_code == 422 and kind.headers["content-type"] == PROBLEM
    assert kind.json()["errors"][0]["loc"] == ["body", "kind"] and "test-lifecycle" in kind.json()["detail"]
    model = await api.alice.post("/v1/jobs", json={"kind": "test-lifecycle", "model": "nope"})
    assert model.json()["errors"][0]["loc"] == ["body", "model"] and "test-model" in model.json()["detail"]
    param = await api.alice.post("/v1/jobs", json={"kind": "test-lifecycle", "model": "test-model", "params": {"stpes": 1}})
    assert "'stpes'; allowed: steps, step_seconds, outcome, artifact_bytes" in param.json()["detail"]
    assert (await api.alice.get("/v1/jobs")).json()["items"] == []  # nothing was created


async def test_cancel_of_a_queued_job_is_at_once_and_a_finished_job_is_deleted(api):
    job = await api.create()
    canceled = await api.alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"
    assert (await api.alice.get(f"/v1/jobs/{job['id']}")).json()["status"] == "canceled"
    assert (await api.alice.delete(f"/v1/jobs/{job['id']}")).status_code == 204
    gone = await api.alice.get(f"/v1/jobs/{job['id']}")
    assert gone.status_code == 404 and gone.json()["type"].endswith("/job-not-found")


async def test_a_running_job_is_asked_to_stop_and_cannot_be_deleted(api):
    job = await api.create()
    api.runs.start(job["id"], "w1")
    assert (await api.alice.delete(f"/v1/jobs/{job['id']}")).status_code == 409
    asked = (await api.alice.post(f"/v1/jobs/{job['id']}/cancel")).json()
    assert asked["status"] == "running" and asked["cancel_requested"] is True
    assert api.runs.report_progress(job["id"], "w1", 0.5, "step") is True  # the worker sees it
    api.runs.finish(job["id"], "w1", JobStatus.canceled)
    done = await api.alice.get(f"/v1/jobs/{job['id']}")
    assert done.json()["status"] == "canceled" and "retry-after" not in done.headers
    finished = await api.alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert finished.status_code == 202  # canceling a canceled job is a no-op


async def test_artifacts_download_with_etag_304_and_head_and_name_their_404s(api):
    job = await api.create()
    api.runs.start(job["id"], "w1")
    data = b"\x89PNG fake bytes"
    assert api.succeed(job["id"], "w1", [ArtifactBlob("a.png", "image/png", data)]) == "finished"
    url = f"/v1/jobs/{job['id']}/artifacts/a.png"
    got = await api.alice.get(url)
    assert got.content == data and got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert (await api.alice.get(url, headers={"If-None-Match": got.headers["etag"]})).status_code == 304
    head = await api.alice.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
    missing = await api.alice.get(f"/v1/jobs/{job['id']}/artifacts/b.png")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/artifact-not-found")
    foreign = await api.bob.get(url)
    assert foreign.status_code == 404 and foreign.json()["type"].endswith("/job-not-found")


async def test_the_event_stream_of_a_finished_job_is_its_status_then_the_end(api):
    job = await api.create()
    api.runs.start(job["id"], "w1")
    api.runs.finish(job["id"], "w1", JobStatus.succeeded)
    stream = await api.alice.get(f"/v1/jobs/{job['id']}/events")
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [block for block in stream.text.split("\n\n") if block.strip()]
    assert len(events) == 1 and events[0].startswith("event: status") and '"succeeded"' in events[0]


async def test_a_change_made_elsewhere_is_seen_at_once_through_the_cache(api):
    job = await api.create()
    for _ in range(3):  # read it a few times: it is cached now
        assert (await api.alice.get(f"/v1/jobs/{job['id']}")).json()["status"] == "queued"
    api.runs.start(job["id"], "w-elsewhere")  # another process's write, published on the job's channel
    for _ in range(200):  # a client polling: the event listener gets its turn between requests
        if (await api.alice.get(f"/v1/jobs/{job['id']}")).json()["status"] == "running":
            break
        await anyio.sleep(0.005)
    else:
        raise AssertionError("the cached job never showed the change")


async def test_kinds_estimates_and_method_answers(api):
    kinds = {k["name"] for k in (await api.alice.get("/v1/kinds")).json()}
    assert {"test-lifecycle", "deconvnet", "activation_maximization", "tabular_attribution"} <= kinds
    estimate = await api.alice.post("/v1/jobs/estimate", json={"kind": "test-lifecycle", "model": "test-model"})
    assert estimate.status_code == 404 and estimate.json()["type"].endswith("/no-estimate")
    wrong = await api.alice.put("/v1/jobs/estimate")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert (await api.alice.get("/v1/jobs", headers={"Authorization": "Bearer nope"})).status_code == 401
