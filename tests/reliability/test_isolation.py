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

import io
import json
import re
import secrets
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from service.jobstore import encode_page_token, new_job_id
from service.settings import Settings
from tests.conftest import ALICE, BOB, TEST_MODEL, Stack, wait_until
from tests.test_jobs_api import PROBLEM
from worker.models.retail import RETAIL_FEATURES
from worker.models.shapes import SHAPES_INPUT, SHAPES_WEIGHTS

STATUSES = ["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL = {"succeeded", "failed", "canceled"}
ALICE_MODEL = "alice-shapes"
ALICE_DATASET = "alice-pics"
IDEM_SAME, IDEM_OTHER = "isolation-key-same-body", "isolation-key-other-body"
IDEM_BODY = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 1, "step_seconds": 0.01}}
OTHER_BODY = {**IDEM_BODY, "params": {"steps": 2, "step_seconds": 0.01}}
LIVE_STEPS = 100_000  # Alice's running job outlives the module (until the last test cancels it)
WEBHOOK_SECRET = "isolation-master-secret-0123456789"


# ---- helpers ---------------------------------------------------------------------------------


def png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png((255, 0, 0)))
        archive.writestr("b.png", png((0, 0, 255)))
    return buffer.getvalue()


def shapes_manifest(name: str) -> str:
    return json.dumps(
        {"name": name, "kind": "image", "format": "safetensors", "architecture": "shapes-cnn", "input": SHAPES_INPUT}
    )


def retail_manifest(name: str) -> str:
    return json.dumps(
        {
            "name": name,
            "kind": "tabular",
            "format": "safetensors",
            "architecture": "tabular-mlp",
            "input": {"tabular": {"features": RETAIL_FEATURES}},
        }
    )


def upload_model(client: httpx.Client, manifest: str, data: bytes) -> httpx.Response:
    return client.post("/v1/models", files={"file": ("weights.safetensors", data)}, data={"manifest": manifest})


def fake_like(real: str) -> str:
    """An id that does not exist, of the same length (so headers such as Content-Length match)."""
    if re.fullmatch(r"[0-9a-z]{26}", real):
        return new_job_id()
    return ("z" + secrets.token_hex(len(real)))[: len(real)]


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request whose answer is read whole, unless it is an event stream (then it fails the
    test instead of hanging on a stream that should never have opened)."""
    with client.stream(method, path, **kwargs) as response:
        if "text/event-stream" in response.headers.get("content-type", ""):
            pytest.fail(f"{method} {path} opened an event stream ({response.status_code})")
        response.read()
    return response


def comparable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ("date",)}


def assert_same_as_missing(theirs: httpx.Response, missing: httpx.Response, real_id: str, fake_id: str) -> None:
    """Another tenant's resource answers exactly as one that does not exist."""
    assert theirs.status_code == 404, (theirs.status_code, theirs.text)
    assert missing.status_code == 404, (missing.status_code, missing.text)
    assert theirs.headers["content-type"].startswith(PROBLEM), theirs.headers
    assert comparable_headers(theirs) == comparable_headers(missing)
    body, expected = theirs.json(), missing.json()
    assert (body["type"], body["title"], body["status"]) == (expected["type"], expected["title"], 404)
    assert json.dumps(body).replace(real_id, "<id>") == json.dumps(expected).replace(fake_id, "<id>")


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name, data = None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and name:
            yield name, json.loads("\n".join(data))
            name, data = None, []


def walk_jobs(client: httpx.Client, params: dict[str, Any]) -> list[dict]:
    """Every job of every page of one listing."""
    items: list[dict] = []
    token = None
    for _ in range(200):
        response = client.get("/v1/jobs", params={**params, **({"page_token": token} if token else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        token = page["next_page_token"]
        if not token:
            return items
    raise AssertionError(f"more than 200 pages for {params}")


def stable(job: dict) -> dict:
    """What must not change about a job: all of it, but a running job's progress."""
    return {k: v for k, v in job.items() if not (k == "progress" and job["status"] == "running")}


# ---- Alice's world -----------------------------------------------------------------------------


@dataclass
class World:
    stack: Stack
    alice: httpx.Client
    bob: httpx.Client
    jobs: dict[str, dict] = field(default_factory=dict)  # label -> Alice's job as she saw it
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)  # label -> name -> bytes
    model: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    model_bytes: bytes = b""
    dataset_bytes: bytes = b""
    bob_baseline: str = ""

    @property
    def alice_ids(self) -> set[str]:
        return {job["id"] for job in self.jobs.values()}

    def target(self, label: str) -> str:
        if label == "model":
            return self.model["id"]
        if label == "dataset":
            return self.dataset["id"]
        return self.jobs[label]["id"]

    def assert_alice_unchanged(self, label: str) -> None:
        if label == "model":
            assert self.alice.get(f"/v1/models/{ALICE_MODEL}").json() == self.model
            assert self.stack.redis.get(f"{self.stack.namespace}:blob:models:alice:{ALICE_MODEL}") == self.model_bytes
            return
        if label == "dataset":
            assert self.alice.get(f"/v1/datasets/{ALICE_DATASET}").json() == self.dataset
            blob = self.stack.redis.get(f"{self.stack.namespace}:blob:datasets:alice:{ALICE_DATASET}")
            assert blob == self.dataset_bytes
            return
        before = self.jobs[label]
        now = self.alice.get(f"/v1/jobs/{before['id']}")
        assert now.status_code == 200, now.text
        assert stable(now.json()) == stable(before)
        assert now.json()["cancel_requested"] is False
        for name, data in self.artifacts.get(label, {}).items():
            download = self.alice.get(f"/v1/jobs/{before['id']}/artifacts/{name}")
            assert download.status_code == 200 and download.content == data


@pytest.fixture(scope="module")
def world(redis_url, tmp_path_factory) -> Iterator[World]:
    stack = Stack(
        redis_url, tmp_path_factory.mktemp("logs"), max_concurrent_jobs_per_tenant=1, webhook_secret=WEBHOOK_SECRET
    )
    try:
        stack.start_api()
        stack.start_worker(wait=False)
        stack.start_worker(wait=False)
        alice, bob = stack.client(ALICE), stack.client(BOB)
        w = World(stack, alice, bob)
        # Workers register the models (the test one included) as they start.
        wait_until(lambda: alice.get(f"/v1/models/{TEST_MODEL}").status_code == 200, timeout=120, what="the catalog")
        w.bob_baseline = stack.create(bob, {"steps": 1, "step_seconds": 0.01})["id"]

        # Alice's jobs that finish, run one at a time (her limit is 1) as the workers come up.
        ids = {
            "succeeded": stack.create(alice, {"steps": 2, "step_seconds": 0.01})["id"],
            "failed": stack.create(alice, {"steps": 1, "outcome": "fail"})["id"],
        }
        for label, key in (("idempotent", IDEM_SAME), ("idempotent-2", IDEM_OTHER)):
            response = alice.post("/v1/jobs", json=IDEM_BODY, headers={"Idempotency-Key": key})
            assert response.status_code == 202, response.text
            ids[label] = response.json()["id"]
        w.model_bytes = SHAPES_WEIGHTS.read_bytes()
        uploaded = upload_model(alice, shapes_manifest(ALICE_MODEL), w.model_bytes)
        assert uploaded.status_code == 202, uploaded.text
        ids["inspection"] = uploaded.json()["inspection_job"]
        w.dataset_bytes = image_zip()
        created = alice.post(
            "/v1/datasets", files={"file": ("pics.zip", w.dataset_bytes)}, data={"name": ALICE_DATASET}
        )
        assert created.status_code == 201, created.text

        wait_until(lambda: len(stack.live_workers()) >= 2, timeout=120, what="two workers to beat")
        for job_id in ids.values():
            stack.wait_status(alice, job_id, TERMINAL, timeout=60)
        stack.wait_status(bob, w.bob_baseline, {"succeeded"}, timeout=30)

        # Then one that keeps running (holding Alice's only slot), one that therefore stays
        # queued, and one canceled while queued.
        ids["running"] = stack.create(alice, {"steps": LIVE_STEPS, "step_seconds": 0.05})["id"]
        stack.wait_status(alice, ids["running"], {"running"})
        ids["queued"] = stack.create(alice, {"steps": 1, "step_seconds": 0.01})["id"]
        ids["canceled"] = stack.create(alice, {"steps": 1, "step_seconds": 0.01})["id"]
        assert alice.post(f"/v1/jobs/{ids['canceled']}/cancel").json()["status"] == "canceled"

        for label, job_id in ids.items():
            w.jobs[label] = alice.get(f"/v1/jobs/{job_id}").json()
            for ref in (w.jobs[label]["result"] or {}).get("artifacts", []):
                w.artifacts.setdefault(label, {})[ref["name"]] = alice.get(ref["url"]).content
        expected = {
            "succeeded": "succeeded", "failed": "failed", "idempotent": "succeeded", "idempotent-2": "succeeded",
            "inspection": "succeeded", "running": "running", "queued": "queued", "canceled": "canceled",
        }  # fmt: skip
        assert {label: job["status"] for label, job in w.jobs.items()} == expected
        assert set(w.artifacts["succeeded"]) == {"result.json", "payload.bin"}
        w.model = alice.get(f"/v1/models/{ALICE_MODEL}").json()
        assert w.model["status"] == "ready", w.model
        w.dataset = alice.get(f"/v1/datasets/{ALICE_DATASET}").json()
        assert w.dataset["count"] == 2
        yield w
    finally:
        stack.stop()


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
