"""Alice's world for the tenant-isolation matrix (tests/reliability/test_isolation.py): what
she owns and how it is built, and the requests and comparisons Bob's side of the matrix uses
(an id that does not exist, an answer compared with a missing id's, every page of a listing,
an event stream read event by event)."""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.jobstore import new_job_id
from tests.conftest import ALICE, BOB, TEST_MODEL, Stack, wait_until
from tests.e2e.test_jobs_api import PROBLEM
from worker.models.retail import RETAIL_FEATURES
from worker.models.shapes import SHAPES_INPUT, SHAPES_WEIGHTS

TERMINAL = {"succeeded", "failed", "canceled"}
ALICE_MODEL = "alice-shapes"
ALICE_DATASET = "alice-pics"
IDEM_SAME, IDEM_OTHER = "isolation-key-same-body", "isolation-key-other-body"
IDEM_BODY = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": {"steps": 1, "step_seconds": 0.01}}
OTHER_BODY = {**IDEM_BODY, "params": {"steps": 2, "step_seconds": 0.01}}
LIVE_STEPS = 100_000  # Alice's running job outlives the module (until the last test cancels it)
WEBHOOK_SECRET = "isolation-master-secret-0123456789"


# ---- requests and comparisons ----------------------------------------------------------------


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

    def stored_file(self, collection: str, name: str) -> bytes:
        """The bytes of Alice's upload in the blob store, found through its catalog record."""
        record = json.loads(self.stack.redis.hget(f"{self.stack.namespace}:{collection}:alice", name))
        key = record["file"]["key"] if collection == "models" else record["files"][0]["key"]
        return self.stack.blob_store().get_bytes(key)

    def assert_alice_unchanged(self, label: str) -> None:
        if label == "model":
            assert self.alice.get(f"/v1/models/{ALICE_MODEL}").json() == self.model
            assert self.stored_file("models", ALICE_MODEL) == self.model_bytes
            return
        if label == "dataset":
            assert self.alice.get(f"/v1/datasets/{ALICE_DATASET}").json() == self.dataset
            assert self.stored_file("datasets", ALICE_DATASET) == self.dataset_bytes
            return
        before = self.jobs[label]
        now = self.alice.get(f"/v1/jobs/{before['id']}")
        assert now.status_code == 200, now.text
        assert stable(now.json()) == stable(before)
        assert now.json()["cancel_requested"] is False
        for name, data in self.artifacts.get(label, {}).items():
            download = self.alice.get(f"/v1/jobs/{before['id']}/artifacts/{name}")
            assert download.status_code == 200 and download.content == data


@contextmanager
def alices_world(redis_url: str, log_dir: Path) -> Iterator[World]:
    """A stack of two workers, one concurrent job per tenant, and everything Alice owns in it
    (her jobs in every status, an uploaded model and dataset); stopped on exit."""
    stack = Stack(redis_url, log_dir, max_concurrent_jobs_per_tenant=1, webhook_secret=WEBHOOK_SECRET)
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
