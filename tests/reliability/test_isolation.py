"""Tenant isolation, as a matrix: no endpoint leaks another tenant's job, model, dataset or artifact.

Alice owns jobs in every status (one of them created by her model upload, two under
Idempotency-Keys), an uploaded model and an uploaded dataset. Bob, the other tenant, then:

- calls every endpoint that takes an id with Alice's ids, and gets a 404 problem+json identical
  (status, headers, body, modulo the id itself) to the one for an id that does not exist, so
  nothing tells "exists but not yours" from "does not exist"; Alice's resources stay as they were;
- lists jobs with every combination of the filters and page size, following every page, and with
  Alice's page tokens, and lists models and datasets: none of Alice's ids ever shows;
- names Alice's model or dataset in a job (refused exactly as an unknown model or dataset); reuses Alice's model and dataset names for his own
  uploads without a conflict, without seeing or deleting hers;
- reuses Alice's Idempotency-Keys (same and another body) and gets new jobs of his own, while
  Alice's replays still answer her original jobs;
- follows his own job's event stream while Alice's job is publishing, and sees only his events;
- gets a webhook signing secret different from Alice's.

At the end Alice's jobs, artifacts, model and dataset are unchanged, and her model and dataset
still work in a job. The stack runs two workers with one concurrent job per tenant, so Alice's
`running` job holds a worker and her `queued` job stays queued for the whole module.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from itertools import product

import httpx
import pytest
from pydantic import ValidationError

from service.jobstore import encode_page_token
from service.settings import Settings
from tests.conftest import ALICE
from tests.e2e.test_jobs_api import PROBLEM
from tests.reliability.isolation_world import (
    ALICE_DATASET,
    ALICE_MODEL,
    IDEM_BODY,
    IDEM_OTHER,
    IDEM_SAME,
    LIVE_STEPS,
    OTHER_BODY,
    TERMINAL,
    WEBHOOK_SECRET,
    World,
    alices_world,
    assert_same_as_missing,
    fake_like,
    retail_manifest,
    send,
    sse_events,
    upload_model,
    walk_jobs,
)
from worker.models.shapes import SHAPES_WEIGHTS

STATUSES = ["queued", "running", "succeeded", "failed", "canceled"]


@pytest.fixture(scope="module")
def world(redis_url, tmp_path_factory) -> Iterator[World]:
    with alices_world(redis_url, tmp_path_factory.mktemp("logs")) as built:
        yield built


# ---- 1. every endpoint that takes an id ---------------------------------------------------------

JOB_ENDPOINTS = [
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("GET", "/v1/jobs/{id}/events"),
    ("GET", "/v1/jobs/{id}/artifacts/result.json"),
    ("GET", "/v1/jobs/{id}/artifacts/payload.bin"),
]
JOB_TARGETS = ["succeeded", "failed", "running", "queued", "canceled", "inspection", "idempotent"]
CATALOG_CELLS = [
    ("GET", "/v1/models/{id}", "model"),
    ("DELETE", "/v1/models/{id}", "model"),
    ("GET", "/v1/datasets/{id}", "dataset"),
    ("DELETE", "/v1/datasets/{id}", "dataset"),
]
ID_CELLS = [(m, p, t) for (m, p), t in product(JOB_ENDPOINTS, JOB_TARGETS)] + CATALOG_CELLS


@pytest.mark.parametrize(("method", "template", "target"), ID_CELLS, ids=[f"{m} {p} @{t}" for m, p, t in ID_CELLS])
def test_another_tenants_id_answers_exactly_as_a_missing_one(world, method, template, target):
    real = world.target(target)
    fake = fake_like(real)
    theirs = send(world.bob, method, template.format(id=real))
    missing = send(world.bob, method, template.format(id=fake))
    assert_same_as_missing(theirs, missing, real, fake)
    world.assert_alice_unchanged(target)
    if method == "GET" and not template.endswith("/events"):
        # The control: the path is right, and Alice does see her resource there (or, for an
        # artifact her job does not have, the same 404 as Bob).
        mine = send(world.alice, method, template.format(id=real))
        name = template.rpartition("/")[2]
        has_it = "/artifacts/" not in template or name in world.artifacts.get(target, {})
        assert mine.status_code == (200 if has_it else 404), mine.text


# ---- 2. listings -----------------------------------------------------------------------------

LIST_CELLS = list(product([None, *STATUSES], [None, "test-lifecycle", "model_inspection"], [1, 200]))


@pytest.mark.parametrize(
    ("status", "kind", "page_size"),
    LIST_CELLS,
    ids=[f"status={s or '-'},kind={k or '-'},page_size={n}" for s, k, n in LIST_CELLS],
)
def test_job_listings_never_show_another_tenants_jobs(world, status, kind, page_size):
    params = {k: v for k, v in {"status": status, "kind": kind, "page_size": page_size}.items() if v is not None}
    bobs = walk_jobs(world.bob, params)
    assert not {j["id"] for j in bobs} & world.alice_ids, params
    assert all((status is None or j["status"] == status) and (kind is None or j["kind"] == kind) for j in bobs)
    if status in (None, "succeeded") and kind in (None, "test-lifecycle"):
        assert world.bob_baseline in {j["id"] for j in bobs}  # Bob's own do show
    # The control: the same listing of Alice's holds each of her jobs that matches it.
    alices = {j["id"] for j in walk_jobs(world.alice, params)}
    matching = {
        job["id"]
        for job in world.jobs.values()
        if (status is None or job["status"] == status) and (kind is None or job["kind"] == kind)
    }
    assert matching <= alices, params
    assert world.bob_baseline not in alices


def test_another_tenants_page_tokens_page_only_through_ones_own_jobs(world):
    tokens, token = [], None
    while True:
        page = world.alice.get("/v1/jobs", params={"page_size": 1, **({"page_token": token} if token else {})}).json()
        token = page["next_page_token"]
        if not token:
            break
        tokens.append(token)
    assert len(tokens) >= len(world.jobs) - 1
    forged = [encode_page_token(job_id) for job_id in world.alice_ids]
    for token in tokens + forged:
        for params in (
            {"page_token": token},
            {"page_token": token, "page_size": 1},
            {"page_token": token, "status": "succeeded"},
        ):
            response = world.bob.get("/v1/jobs", params=params)
            if response.status_code == 422:
                assert response.headers["content-type"].startswith(PROBLEM)
                continue
            assert response.status_code == 200, response.text
            listed = {j["id"] for j in response.json()["items"]}
            assert not listed & world.alice_ids, (token, params)


@pytest.mark.parametrize(("path", "target"), [("/v1/models", "model"), ("/v1/datasets", "dataset")])
def test_catalog_listings_never_show_another_tenants_uploads(world, path, target):
    assert world.target(target) not in {r["id"] for r in world.bob.get(path).json()}
    assert world.target(target) in {r["id"] for r in world.alice.get(path).json()}


NAMING_KINDS = {
    "test-lifecycle": {},
    "model_inspection": {},
    "test-layer-probe": {"layer": "features.0"},
    "deconvnet": {"layer": "features.0", "dataset": "shapes-val", "top_channels": 1, "top_k": 1},
}


@pytest.mark.parametrize("kind", list(NAMING_KINDS))
def test_a_job_naming_another_tenants_model_is_refused_as_an_unknown_model(world, kind):
    fake = fake_like(ALICE_MODEL)

    def submit(model: str) -> httpx.Response:
        return world.bob.post("/v1/jobs", json={"kind": kind, "model": model, "params": NAMING_KINDS[kind]})

    theirs, missing = submit(ALICE_MODEL), submit(fake)
    assert theirs.status_code == missing.status_code == 422, theirs.text
    assert theirs.headers["content-type"].startswith(PROBLEM)
    assert theirs.json()["errors"][0]["loc"] == ["body", "model"]
    # Same problem, same `allowed` list (Bob's models only), whatever the name.
    assert theirs.text.replace(ALICE_MODEL, "<id>") == missing.text.replace(fake, "<id>")
    world.assert_alice_unchanged("model")


@pytest.mark.parametrize(
    ("kind", "params", "loc"),
    [
        ("deconvnet", {"layer": "features.0", "top_channels": 1, "top_k": 1}, ["dataset"]),
        ("activation_maximization", {"objective": {"type": "channel", "layer": "features.0", "units": [0]},
                                     "steps": 1}, ["reference_dataset"]),
    ],
)  # fmt: skip
def test_a_job_naming_another_tenants_dataset_is_refused_as_an_unknown_dataset(world, kind, params, loc):
    fake = fake_like(ALICE_DATASET)

    def submit(dataset: str) -> httpx.Response:
        body = {**params, loc[0]: dataset}
        return world.bob.post("/v1/jobs", json={"kind": kind, "model": "shapes-cnn", "params": body})

    theirs, missing = submit(ALICE_DATASET), submit(fake)
    assert theirs.status_code == missing.status_code == 422, theirs.text
    assert theirs.headers["content-type"].startswith(PROBLEM)
    assert theirs.json()["type"].endswith("/unknown-dataset")
    assert theirs.json()["errors"][0]["loc"] == ["body", "params", *loc]
    # Same problem, same `allowed` list (Bob's and the built-in image datasets), whatever the name.
    assert theirs.text.replace(ALICE_DATASET, "<id>") == missing.text.replace(fake, "<id>")
    assert ALICE_DATASET not in theirs.json()["detail"].split("allowed", 1)[1]
    world.assert_alice_unchanged("dataset")


@pytest.mark.parametrize("target", ["model", "dataset"])
def test_another_tenants_names_are_free_and_ones_own_upload_under_them_stays_apart(world, target):
    """No 409 tells Bob the name is taken; his copy is his alone; deleting it leaves Alice's."""
    bob, name = world.bob, world.target(target)
    collection = f"/v1/{target}s"
    if target == "model":
        response = upload_model(
            bob, retail_manifest(name), (SHAPES_WEIGHTS.parent / "retail-mlp.safetensors").read_bytes()
        )
        assert response.status_code == 202, response.text
        inspection = world.stack.wait_status(bob, response.json()["inspection_job"], TERMINAL, timeout=60)
        assert inspection["status"] == "succeeded", inspection["error"]
        mine = bob.get(f"{collection}/{name}").json()
        assert mine["kind"] == "tabular" and [l["name"] for l in mine["layers"]][:2] == ["hidden1", "act1"]
        assert inspection["result"]["summary"]["cache_hit"] is False
    else:
        table = b"x,y\n1,2\n3,4\n5,6\n"
        response = bob.post(collection, files={"file": ("bobs.csv", table)}, data={"name": name})
        assert response.status_code == 201, response.text
        mine = bob.get(f"{collection}/{name}").json()
        assert mine["kind"] == "table" and mine["count"] == 3
    world.assert_alice_unchanged(target)
    assert bob.delete(f"{collection}/{name}").status_code == 204
    world.assert_alice_unchanged(target)
    assert bob.get(f"{collection}/{name}").status_code == 404


# ---- 3. idempotency keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "body", "label"),
    [(IDEM_SAME, IDEM_BODY, "idempotent"), (IDEM_OTHER, OTHER_BODY, "idempotent-2")],
    ids=["same-body", "another-body"],
)
def test_an_idempotency_key_belongs_to_its_tenant(world, key, body, label):
    alices = world.jobs[label]["id"]
    first = world.bob.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text  # not Alice's job, and no 422 "key reused"
    bobs = first.json()["id"]
    assert bobs not in world.alice_ids and "Idempotent-Replayed" not in first.headers
    assert first.json()["params"]["steps"] == body["params"]["steps"]
    replay = world.bob.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202 and replay.json()["id"] == bobs
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Alice's key still answers her job, and still refuses her another body.
    hers = world.alice.post("/v1/jobs", json=IDEM_BODY, headers={"Idempotency-Key": key})
    assert hers.status_code == 202 and hers.json()["id"] == alices
    assert hers.headers["Idempotent-Replayed"] == "true"
    conflict = world.alice.post("/v1/jobs", json={**IDEM_BODY, "metadata": {"x": 1}}, headers={"Idempotency-Key": key})
    assert conflict.status_code == 422 and alices in conflict.json()["detail"] and bobs not in conflict.text
    world.assert_alice_unchanged(label)
    world.stack.wait_status(world.bob, bobs, TERMINAL)


# ---- 4. event streams --------------------------------------------------------------------------


def test_an_event_stream_carries_only_its_own_job_while_another_tenants_job_publishes(world):
    steps = 20
    bobs = world.stack.create(world.bob, {"steps": steps, "step_seconds": 0.05})["id"]
    with world.bob.stream("GET", f"/v1/jobs/{bobs}/events", timeout=httpx.Timeout(20)) as response:
        assert response.status_code == 200
        events = list(sse_events(response))  # ends after the job's terminal status event
    statuses = [data for name, data in events if name == "status"]
    progress = [data for name, data in events if name == "progress"]
    assert statuses and all(data["id"] == bobs for data in statuses), statuses
    assert statuses[-1]["status"] == "succeeded"
    assert progress and all(re.fullmatch(rf"step \d+ of {steps}", p["message"]) for p in progress), progress
    assert {name for name, _ in events} <= {"status", "progress"}

    # The control: Alice's job was publishing all along, on her own stream.
    live = world.jobs["running"]["id"]
    seen = []
    deadline = time.monotonic() + 10
    with world.alice.stream("GET", f"/v1/jobs/{live}/events", timeout=httpx.Timeout(10)) as response:
        assert response.status_code == 200
        for name, data in sse_events(response):
            seen.append((name, data))
            if sum(n == "progress" for n, _ in seen) >= 2 or time.monotonic() > deadline:
                break
    assert seen[0][0] == "status" and seen[0][1]["id"] == live and seen[0][1]["status"] == "running"
    assert all(d["message"].endswith(f" of {LIVE_STEPS}") for n, d in seen if n == "progress"), seen
    assert sum(n == "progress" for n, _ in seen) >= 2


# ---- 5. webhook secrets ------------------------------------------------------------------------


def test_each_tenant_has_its_own_webhook_secret(world):
    alices = world.alice.get("/v1/webhook-secret")
    bobs = world.bob.get("/v1/webhook-secret")
    assert alices.status_code == bobs.status_code == 200
    assert alices.json()["secret"].startswith("whsec_") and bobs.json()["secret"].startswith("whsec_")
    assert alices.json()["secret"] != bobs.json()["secret"]
    assert WEBHOOK_SECRET not in alices.text + bobs.text
    assert world.alice.get("/v1/webhook-secret").json() == alices.json()  # stable


# ---- 6. the shared scope -----------------------------------------------------------------------


def test_no_tenant_can_be_named_after_the_scope_every_tenant_sees(make_stack):
    """A tenant called `builtin` would publish into the catalog scope that every tenant reads
    (and could delete the built-in models and datasets of all): refused as configuration."""
    with pytest.raises(ValidationError, match="reserved"):
        Settings(api_keys=f"alice:{ALICE},builtin:key-builtin-0123456789")
    stack = make_stack(api=False, workers=0)
    stack.env["GLASSBOX_API_KEYS"] += ",builtin:key-builtin-0123456789"
    api = stack._spawn("api-builtin", "api", "--port", str(stack.port))
    assert api.wait(60) != 0  # the API refuses to start rather than serve that tenant


# ---- 7. afterwards -----------------------------------------------------------------------------


def test_alices_resources_are_intact_and_still_work_after_all_of_the_above(world):
    """Runs last: it cancels Alice's running job to free her slot."""
    for label in [*world.jobs, "model", "dataset"]:
        world.assert_alice_unchanged(label)
    assert world.alice_ids <= {j["id"] for j in walk_jobs(world.alice, {"page_size": 200})}
    alice, stack = world.alice, world.stack
    assert alice.post(f"/v1/jobs/{world.jobs['running']['id']}/cancel").status_code == 202
    assert stack.wait_status(alice, world.jobs["running"]["id"], TERMINAL)["status"] == "canceled"
    assert stack.wait_status(alice, world.jobs["queued"]["id"], TERMINAL)["status"] == "succeeded"
    # Her model and her dataset, together, in a job of hers.
    response = alice.post(
        "/v1/jobs",
        json={
            "kind": "deconvnet",
            "model": ALICE_MODEL,
            "params": {"layer": "features.0", "dataset": ALICE_DATASET, "top_channels": 1, "top_k": 1},
        },
    )
    assert response.status_code == 202, response.text
    done = stack.wait_status(alice, response.json()["id"], TERMINAL, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert json.loads(alice.get(f"/v1/jobs/{done['id']}/artifacts/result.json").content)
