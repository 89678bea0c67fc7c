"""The job API around the jobs: listing (newest first, paging without duplicates or gaps under
concurrent creates, filters), the per-tenant concurrency limit, coherence across API replicas,
and what operators read (metrics, health, the kinds and their params schemas)."""

from __future__ import annotations

import threading
import time

import httpx

from service.catalogs import ModelCatalog
from tests.conftest import ALICE, BOB, TEST_MODEL, wait_until


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
