"""Activation index builds through HTTP, fanned out over two workers: exact against a brute
force over the same images, reused, waited for, canceled as a whole, surviving a worker killed
mid-shard, deleted with their dataset, and read by deconvnet jobs."""

from __future__ import annotations

import io
import json
import os
import signal
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import wait_until
from worker.core.imaging import prepare_images
from worker.kinds.activation_index.files import stats_from_bytes
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, shapes_val

LAYERS = {"features.6": 7, "features.11": 12}  # name -> how many modules of `features` it is the output of


def build(stack, client, timeout: float = 180, **params) -> dict:
    body = {"kind": "activation_index", "model": "shapes-cnn", "params": {"dataset": "shapes-val", **params}}
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    return stack.wait_status(client, job.json()["id"], {"succeeded", "failed", "canceled"}, timeout=timeout)


def handed_over(client, job_id: str) -> bool:
    """The build holds its claim and its shards are queued (or it is already done)."""
    job = client.get(f"/v1/jobs/{job_id}").json()
    started = (job.get("message") or "").endswith("every worker") or job["progress"]["fraction"] > 0.05
    return started or job["status"] not in {"queued", "running"}


def brute_force_maxima(layer: str) -> np.ndarray:
    """[images, channels]: each image's largest activation per channel, one image at a time."""
    model, pictures = load_shapes_cnn(), shapes_val()[0]
    with torch.no_grad():
        out = [
            model.features[: LAYERS[layer]](prepare_images([p], SHAPES_INPUT, "cpu"))[0].amax(dim=(1, 2))
            for p in pictures
        ]
    return torch.stack(out).numpy()


def stored_stats(stack, record: dict):
    return stats_from_bytes(stack.blob_store().get_bytes(record["file"]))


def assert_equals_brute_force(stats, maxima: np.ndarray) -> None:
    assert stats.images == maxima.shape[0]
    values, images = stats.top.values.numpy(), stats.top.images.numpy()
    for channel in range(maxima.shape[1]):
        expected = np.sort(maxima[:, channel])[::-1][: stats.k]
        np.testing.assert_allclose(values[channel], expected, rtol=1e-5, atol=1e-6)
        # each kept image really has that value (ties may order equal values either way)
        np.testing.assert_allclose(maxima[images[channel], channel], values[channel], rtol=1e-5, atol=1e-6)


def test_a_build_over_two_workers_equals_the_brute_force_and_is_then_reused(two_workers):
    client = two_workers.client()
    job = build(two_workers, client, layers=list(LAYERS), shard_images=100, k=16)
    assert job["status"] == "succeeded", job["error"]
    result = client.get(job["result"]["artifacts"][0]["url"]).json()
    assert result["shards"] == 4 and [i["layer"] for i in result["indexes"]] == list(LAYERS)
    listed = {r["layer"]: r for r in client.get("/v1/indexes").json()}
    assert set(listed) == set(LAYERS) and all(r["images"] == 400 and r["k"] == 16 for r in listed.values())
    for layer in LAYERS:
        record = client.get(f"/v1/indexes/{listed[layer]['id']}").json()
        full = next(i for i in result["indexes"] if i["layer"] == layer)
        assert_equals_brute_force(stored_stats(two_workers, full), brute_force_maxima(layer))
        assert record["built_by"] == job["id"]
    steps = [client.get(f"/v1/jobs/{job['id']}").json()]
    assert steps[0]["progress"]["fraction"] == 1.0
    again = build(two_workers, client, layers=["features.11"], k=8)
    reused = client.get(again["result"]["artifacts"][0]["url"]).json()
    assert reused["indexes"][0]["reused"] is True and reused["indexes"][0]["built_by"] == job["id"]
    assert client.get("/v1/indexes", headers={"Authorization": "Bearer key-bob-0123456789"}).json() == []


def test_a_second_build_of_the_same_index_waits_for_the_first(two_workers):
    client = two_workers.client()
    first = client.post("/v1/jobs", json={"kind": "activation_index", "model": "shapes-cnn",
                                          "params": {"dataset": "shapes-val", "layers": ["features.3"], "shard_images": 50,
                                                     "batch_size": 8, "rebuild": True}}).json()  # fmt: skip
    # the second is submitted once the first holds the build (two idle workers could otherwise start it first)
    wait_until(lambda: handed_over(client, first["id"]), timeout=60, what="the first build to be handed over")
    second = build(two_workers, client, layers=["features.3"], shard_images=50, batch_size=8)
    first = two_workers.wait_status(client, first["id"], {"succeeded", "failed"}, timeout=180)
    assert first["status"] == second["status"] == "succeeded", (first["error"], second["error"])
    waited = client.get(second["result"]["artifacts"][0]["url"]).json()["indexes"][0]
    assert waited["built_by"] == first["id"] and waited["reused"] is True
    assert len([r for r in client.get("/v1/indexes").json() if r["layer"] == "features.3"]) == 1


def test_canceling_a_build_cancels_its_shards_and_publishes_nothing(two_workers):
    client = two_workers.client()
    job = client.post("/v1/jobs", json={"kind": "activation_index", "model": "shapes-cnn",
                                        "params": {"dataset": "shapes-val", "layers": ["features.9"], "shard_images": 16,
                                                   "batch_size": 1}}).json()  # fmt: skip
    wait_until(lambda: handed_over(client, job["id"]), timeout=60, what="the build to be handed over")
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.json()["status"] == "canceled"
    record = two_workers.redis.hget(f"{two_workers.namespace}:job:{job['id']}", "fanout")
    steps = json.loads(record)
    wait_until(lambda: all(client.get(f"/v1/jobs/{s}").json()["status"] in ("canceled", "succeeded")
                           for s in [*steps["shards"], steps["merge"]]), timeout=60, what="the steps to stop")  # fmt: skip
    assert client.get(f"/v1/jobs/{steps['merge']}").json()["status"] == "canceled"
    assert [r for r in client.get("/v1/indexes").json() if r["layer"] == "features.9"] == []
    # the canceled build let its claim go: the next one builds at once instead of waiting for it
    again = build(two_workers, client, layers=["features.9"], shard_images=200, timeout=120)
    assert again["status"] == "succeeded", again["error"]
    assert client.get(again["result"]["artifacts"][0]["url"]).json()["indexes"][0]["built_by"] == again["id"]


def test_a_worker_killed_mid_shard_costs_that_shard_only(make_stack):
    stack = make_stack(workers=2)
    client = stack.client()
    job = client.post("/v1/jobs", json={"kind": "activation_index", "model": "shapes-cnn",
                                        "params": {"dataset": "shapes-val", "layers": ["features.6"], "shard_images": 100,
                                                   "batch_size": 2, "k": 8}}).json()  # fmt: skip

    shard, pid = wait_until(lambda: stack.running_step(job["id"], "activation_index_shard"), timeout=60, what="a shard to run")
    os.kill(pid, signal.SIGKILL)
    stack.start_worker(wait=False)
    final = stack.wait_status(client, job["id"], {"succeeded", "failed"}, timeout=240)
    assert final["status"] == "succeeded", final["error"]
    steps = json.loads(stack.redis.hget(f"{stack.namespace}:job:{job['id']}", "fanout"))
    attempts = {s: client.get(f"/v1/jobs/{s}").json()["attempts"] for s in steps["shards"]}
    assert attempts[shard] == 2 and all(n == 1 for s, n in attempts.items() if s != shard)  # only that shard ran again
    record = client.get("/v1/indexes").json()[0]
    assert_equals_brute_force(stats_from_bytes(stack.blob_store().get_bytes(f"{_full(client, final)['file']}")),
                              brute_force_maxima("features.6"))  # fmt: skip
    assert record["images"] == 400


def _full(client, job: dict) -> dict:
    return client.get(job["result"]["artifacts"][0]["url"]).json()["indexes"][0]


def test_an_index_goes_with_its_dataset_and_deconvnet_reads_it(two_workers):
    client = two_workers.client()
    pictures = shapes_val()[0][:40]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, picture in enumerate(pictures):
            png = io.BytesIO()
            Image.fromarray(picture).save(png, format="PNG")
            archive.writestr(f"img-{i:03d}.png", png.getvalue())
    assert (
        client.post(
            "/v1/datasets", files={"file": ("forty.zip", buffer.getvalue())}, data={"name": "forty"}
        ).status_code
        == 201
    )
    body = {
        "kind": "deconvnet",
        "model": "shapes-cnn",
        "params": {"dataset": "forty", "layer": "features.6", "top_k": 3, "channels": [1, 2]},
    }
    first = two_workers.wait_status(
        client, client.post("/v1/jobs", json=body).json()["id"], {"succeeded", "failed"}, timeout=120
    )
    second = two_workers.wait_status(
        client, client.post("/v1/jobs", json=body).json()["id"], {"succeeded", "failed"}, timeout=120
    )
    assert first["result"]["summary"]["index_built"] is True and second["result"]["summary"]["index_built"] is False
    result = client.get(f"/v1/jobs/{second['id']}/artifacts/result.json").json()
    assert result["index"]["used"] is True and result["index"]["images"] == 40
    maxima = brute_force_on(pictures, "features.6")
    for item in result["items"]:
        assert item["activation"] == pytest.approx(float(maxima[item["image_index"], item["channel"]]), rel=1e-5)
        rank = np.argsort(-maxima[:, item["channel"]], kind="stable").tolist()
        assert rank.index(item["image_index"]) < 3
    index = next(r for r in client.get("/v1/indexes").json() if r["dataset"] == "forty")
    assert client.delete("/v1/datasets/forty").status_code == 204
    assert client.get(f"/v1/indexes/{index['id']}").status_code == 404


def brute_force_on(pictures, layer: str) -> np.ndarray:
    model = load_shapes_cnn()
    with torch.no_grad():
        out = [
            model.features[: LAYERS[layer]](prepare_images([p], SHAPES_INPUT, "cpu"))[0].amax(dim=(1, 2))
            for p in pictures
        ]
    return torch.stack(out).numpy()


def test_activation_maximization_reads_dataset_max_from_the_index(two_workers):
    client = two_workers.client()
    params = {"objective": {"type": "channel", "layer": "features.6", "units": [3, 5]}, "steps": 4, "size": 64,
              "reference_dataset": "shapes-val"}  # fmt: skip
    job = client.post(
        "/v1/jobs", json={"kind": "activation_maximization", "model": "shapes-cnn", "params": params}
    ).json()
    job = two_workers.wait_status(client, job["id"], {"succeeded", "failed"}, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    result = client.get(f"/v1/jobs/{job['id']}/artifacts/result.json").json()
    assert result["reference_index"] is not None and result["reference_index"]["images"] == 400
    model, pictures = load_shapes_cnn(), shapes_val()[0]
    with torch.no_grad():
        means = torch.stack(
            [model.features[:7](prepare_images([p], SHAPES_INPUT, "cpu"))[0].mean(dim=(1, 2)) for p in pictures]
        )
    for image in result["images"]:
        column = means[:, image["unit"]]
        assert image["dataset_max"] == pytest.approx(float(column.max()), rel=1e-5)
        assert image["dataset_max_image"].startswith(f"{int(column.argmax()):04d}-")
