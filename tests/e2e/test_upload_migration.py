"""A deployment upgraded in place keeps its uploads: Redis holds a model and two datasets the
way Glassbox stored them before the blob store (strings `ns:blob:{collection}:{scope}:{id}`
beside their catalog records); the API and a worker start, one of them moves every string into
the store, and jobs then use the model and the datasets and get what the same weights and
images give through today's paths."""

from __future__ import annotations

import hashlib
import json

import pytest

from service.uploads import check_csv
from tests.conftest import Stack, wait_until
from tests.e2e.dataset_files import image_folder, inline, zip_of
from worker.models.builtin import DATA
from worker.models.shapes import SHAPES_INPUT, SHAPES_WEIGHTS

pytestmark = pytest.mark.slow

IMAGES = image_folder(8)
DECONVNET = {"layer": "features.3", "top_channels": 2, "top_k": 3}


def legacy_layout(stack: Stack) -> dict[str, bytes]:
    """What an API of before the blob store wrote for Alice's three uploads, and one string
    whose record was deleted since (the old delete removed both, but a crash could leave it)."""
    ns, connection = stack.namespace, stack.redis
    weights, pictures, table = SHAPES_WEIGHTS.read_bytes(), zip_of(IMAGES), (DATA / "retail-sample.csv").read_bytes()
    model = {
        "id": "old-shapes", "name": "old-shapes", "kind": "image", "source": "upload", "status": "ready",
        "description": "", "input": SHAPES_INPUT, "labels": None, "layers": None, "warnings": [],
        "format": "safetensors", "architecture": "shapes-cnn", "bytes": len(weights), "inspection_job": "j-old",
    }  # fmt: skip
    images = {
        "id": "old-pics", "kind": "images", "source": "upload", "description": "before", "count": len(IMAGES),
        "image_size": [64, 64], "columns": None, "bytes": len(pictures), "names": sorted(IMAGES), "skipped": [],
        "skipped_count": 0,
    }  # fmt: skip
    summary = check_csv(table)
    rows = {"id": "old-table", "kind": "table", "source": "upload", "description": "", "count": summary.count,
            "image_size": None, "columns": summary.columns, "bytes": len(table), "skipped": [], "skipped_count": 0}  # fmt: skip
    connection.hset(f"{ns}:models:alice", "old-shapes", json.dumps(model))
    connection.hset(f"{ns}:datasets:alice", mapping={"old-pics": json.dumps(images), "old-table": json.dumps(rows)})
    blobs = {"models:alice:old-shapes": weights, "datasets:alice:old-pics": pictures, "datasets:alice:old-table": table,
             "datasets:alice:deleted-since": b"orphan"}  # fmt: skip
    for name, data in blobs.items():
        connection.set(f"{ns}:blob:{name}", data)
    return blobs


def run(stack, client, kind: str, model: str, params: dict) -> dict:
    job = client.post("/v1/jobs", json={"kind": kind, "model": model, "params": params})
    assert job.status_code == 202, job.text
    done = stack.wait_status(client, job.json()["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    return done


def artifact(client, job: dict, name: str) -> bytes:
    return client.get(f"/v1/jobs/{job['id']}/artifacts/{name}").content


def test_uploads_of_before_the_blob_store_are_moved_on_start_and_used_by_jobs(redis_url, tmp_path_factory):
    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"), worker_heartbeat_seconds=0.5)
    blobs = legacy_layout(stack)
    try:
        stack.start_api()
        stack.start_worker()
        ns = stack.namespace
        wait_until(lambda: not stack.redis.keys(f"{ns}:blob:*"), timeout=60, what="the legacy strings to be moved")
        assert not stack.redis.exists(f"{ns}:blob-migration-lock") and not stack.redis.zcard(f"{ns}:blob-leases")
        store = stack.blob_store()
        model = json.loads(stack.redis.hget(f"{ns}:models:alice", "old-shapes"))
        assert store.get_bytes(model["file"]["key"]) == blobs["models:alice:old-shapes"]
        assert model["sha256"] == hashlib.sha256(blobs["models:alice:old-shapes"]).hexdigest()
        for name in ("old-pics", "old-table"):
            record = json.loads(stack.redis.hget(f"{ns}:datasets:alice", name))
            stored = record["files"][0]
            assert store.get_bytes(stored["key"]) == blobs[f"datasets:alice:{name}"] and "names" not in record
            assert stored["sha256"] == hashlib.sha256(blobs[f"datasets:alice:{name}"]).hexdigest()
        assert not list(store.list_blobs("datasets/alice/deleted-since"))

        client = stack.client()
        pics = client.get("/v1/datasets/old-pics").json()
        assert pics["format"] == "zip" and pics["description"] == "before" and pics["count"] == len(IMAGES)
        assert pics["labels"] == sorted({n.split("/")[0] for n in IMAGES})
        old = run(stack, client, "deconvnet", "old-shapes", {**DECONVNET, "dataset": "old-pics"})
        new = run(stack, client, "deconvnet", "shapes-cnn", {**DECONVNET, "images": inline(IMAGES)})
        old_items = json.loads(artifact(client, old, "result.json"))["items"]
        assert old_items and [{**i, "image_name": None} for i in old_items] == json.loads(artifact(client, new, "result.json"))["items"]
        tables = [
            run(stack, client, "tabular_attribution", "retail-mlp", {"dataset": name, "indices": [3, 9]})
            for name in ("old-table", "retail-sample")
        ]
        assert artifact(client, tables[0], "attributions.csv") == artifact(client, tables[1], "attributions.csv")
        assert client.delete("/v1/models/old-shapes").status_code == 204
        wait_until(lambda: not list(store.list_blobs(model["prefix"])), timeout=20, what="the moved model's deletion")
    finally:
        stack.stop()
