"""Atlas jobs through HTTP over two workers: every unit's exemplars equal a brute-force top-k,
their projections are the deconvnet job's, labels and class selectivity match a hand
computation; an identical atlas is served from its stored chunks, a canceled one resumes, a
worker killed mid-chunk costs that chunk only, bad params are refused at submit, and the
stored chunks go with their dataset."""

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
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, shapes_val

LAYER, DEPTH = "features.6", 7  # the layer and how many modules of `features` it is the output of
UNITS = [0, 3, 5, 9, 12, 20]
FAST_FV = {"steps": 8, "size": 32}


def atlas_body(**params) -> dict:
    base = {"layer": LAYER, "dataset": "shapes-val", "units": UNITS, "top_k": 4, "chunk_units": 2,
            "feature_visualization": FAST_FV, "batch_size": 32}  # fmt: skip
    return {"kind": "atlas", "model": "shapes-cnn", "params": {**base, **params}}


def run(stack, client, body: dict, timeout: float = 240) -> dict:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return stack.wait_status(client, response.json()["id"], {"succeeded", "failed", "canceled"}, timeout=timeout)


def artifact(client, job: dict, name: str):
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response


def per_image_maxima(pictures) -> np.ndarray:
    """[images, channels]: each image's largest activation per channel, one image at a time."""
    model = load_shapes_cnn()
    with torch.no_grad():
        out = [model.features[:DEPTH](prepare_images([p], SHAPES_INPUT, "cpu"))[0].amax(dim=(1, 2)) for p in pictures]
    return torch.stack(out).numpy()


def test_an_atlas_is_exact_where_its_parts_are_and_is_then_served_from_its_chunks(two_workers):
    client = two_workers.client()
    job = run(two_workers, client, atlas_body())
    assert job["status"] == "succeeded", job["error"]
    atlas = artifact(client, job, "atlas.json").json()
    result = artifact(client, job, "result.json").json()
    assert [u["unit"] for u in atlas["units"]] == UNITS and result["chunks"] == 3 and result["chunks_reused"] == 0

    pictures, labels = shapes_val()
    maxima = per_image_maxima(pictures)
    deconv = run(two_workers, client, {"kind": "deconvnet", "model": "shapes-cnn", "params": {
        "layer": LAYER, "dataset": "shapes-val", "channels": UNITS, "top_k": 4}})  # fmt: skip
    items = artifact(client, deconv, "result.json").json()["items"]
    classes = sorted(set(labels.tolist()))
    for unit in atlas["units"]:
        n = unit["unit"]
        assert unit["max_activation"] == pytest.approx(float(maxima[:, n].max()), rel=1e-5)
        expected = np.sort(maxima[:, n])[::-1][:4]
        np.testing.assert_allclose([e["activation"] for e in unit["top"]], expected, rtol=1e-5)
        theirs = [i for i in items if i["channel"] == n]
        assert [(e["image_index"], e["position"], e["receptive_field"]) for e in unit["top"]] == [
            (i["image_index"], i["position"], i["receptive_field"]) for i in theirs
        ]  # the deconvnet job's neurons, in its order
        # class selectivity (Morcos et al. 2018) by hand, from each image's largest activation
        means = sorted((float(maxima[labels == c, n].mean()) for c in classes), reverse=True)
        rest = sum(means[1:]) / (len(means) - 1)
        if means[0] + rest > 0:
            assert unit["labels"]["class_selectivity"] == pytest.approx((means[0] - rest) / (means[0] + rest), rel=1e-4)
        strip = Image.open(io.BytesIO(artifact(client, job, unit["images"]["exemplars"]).content))
        assert strip.size == (4 * 64 + 3 * 2, 2 * 64 + 2)  # projections above, patches below
        fv = unit["feature_visualization"]
        assert fv["ratio_to_dataset_max"] == pytest.approx(fv["activation"] / unit["max_activation"])
        assert Image.open(io.BytesIO(artifact(client, job, fv["image"]).content)).size == (32, 32)
    sheet = atlas["sheets"]["fv"]
    image = Image.open(io.BytesIO(artifact(client, job, sheet["file"]).content))
    assert sheet["order"] == UNITS and image.size[0] == sheet["columns"] * 64 + (sheet["columns"] - 1) * 2
    by_max = atlas["orders"]["max_activation"]
    assert [atlas["units"][UNITS.index(u)]["max_activation"] for u in by_max] == sorted(
        (u["max_activation"] for u in atlas["units"]), reverse=True
    )

    again = run(two_workers, client, atlas_body())
    summary = again["result"]["summary"]
    assert summary["served_from_stored_chunks"] is True and summary["chunks_reused"] == 3
    assert artifact(client, again, "atlas.json").json()["units"] == atlas["units"]


def test_a_canceled_atlas_resumes_from_the_chunks_it_finished(two_workers):
    client = two_workers.client()
    body = atlas_body(units=list(range(8)), chunk_units=1, feature_visualization={"steps": 96, "size": 48})
    job = client.post("/v1/jobs", json=body).json()

    def chunks_done() -> int:
        fanout = two_workers.redis.hget(f"{two_workers.namespace}:job:{job['id']}", "fanout")
        steps = json.loads(fanout)["shards"] if fanout else []
        return sum(client.get(f"/v1/jobs/{s}").json()["kind"] == "atlas_chunk"
                   and client.get(f"/v1/jobs/{s}").json()["status"] == "succeeded" for s in steps)  # fmt: skip

    wait_until(lambda: chunks_done() >= 2, timeout=180, what="two chunks to finish")
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "canceled"
    done = chunks_done()
    resumed = run(two_workers, client, body)
    assert resumed["status"] == "succeeded", resumed["error"]
    reused = resumed["result"]["summary"]["chunks_reused"]
    assert done <= reused < 8  # kept what was finished, rendered the rest


def test_a_worker_killed_mid_chunk_costs_that_chunk_only(make_stack):
    stack = make_stack(workers=2)
    client = stack.client()
    body = atlas_body(units=list(range(4)), chunk_units=2, feature_visualization={"steps": 160, "size": 32})
    job = client.post("/v1/jobs", json=body).json()

    chunk, pid = wait_until(lambda: stack.running_step(job["id"], "atlas_chunk"), timeout=120, what="a chunk to run")
    os.kill(pid, signal.SIGKILL)
    stack.start_worker(wait=False)
    final = stack.wait_status(client, job["id"], {"succeeded", "failed"}, timeout=240)
    assert final["status"] == "succeeded", final["error"]
    steps = json.loads(stack.redis.hget(f"{stack.namespace}:job:{job['id']}", "fanout"))["shards"]
    attempts = {s: client.get(f"/v1/jobs/{s}").json()["attempts"] for s in steps}
    assert attempts[chunk] == 2 and all(n == 1 for s, n in attempts.items() if s != chunk)
    assert len(client.get(f"/v1/jobs/{job['id']}/artifacts/atlas.json").json()["units"]) == 4


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"layer": "classifier.0"}, "layer", "convolutional"),
        ({"units": [0, 99]}, "units", "out of range"),
        ({"feature_visualization": {"objective": {"type": "class"}}}, "params", "objective"),
        ({"feature_visualization": {"steps": 0}}, "params", "feature_visualization.steps"),
        ({"chunk_units": 64, "top_k": 32}, "params", "chunk_units"),
    ],
)
def test_bad_atlas_params_are_refused_at_submit(two_workers, params, field, words):
    response = two_workers.client().post("/v1/jobs", json=atlas_body(**params))
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    text = json.dumps(problem)
    assert field in text and words in text, problem


def test_stored_chunks_go_with_their_dataset(two_workers):
    client = two_workers.client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, picture in enumerate(shapes_val()[0][:24]):
            png = io.BytesIO()
            Image.fromarray(picture).save(png, format="PNG")
            archive.writestr(f"img-{i:03d}.png", png.getvalue())
    upload = client.post("/v1/datasets", files={"file": ("few.zip", buffer.getvalue())}, data={"name": "few"})
    assert upload.status_code == 201, upload.text
    job = run(two_workers, client, atlas_body(dataset="few", units=[1, 2], feature_visualization=None))
    assert job["status"] == "succeeded", job["error"]
    assert "fv" not in artifact(client, job, "atlas.json").json()["sheets"]
    key = f"{two_workers.namespace}:atlases:alice"
    records = [json.loads(v) for v in two_workers.redis.hvals(key) if json.loads(v)["dataset"] == "few"]
    assert len(records) == 1 and any(two_workers.blob_store().list_blobs(records[0]["prefix"]))
    assert client.delete("/v1/datasets/few").status_code == 204
    assert not [v for v in two_workers.redis.hvals(key) if json.loads(v)["dataset"] == "few"]
    assert two_workers.redis.zscore(f"{two_workers.namespace}:blob-leases", records[0]["prefix"]) == 0


def test_an_atlas_is_estimated_before_it_is_submitted(two_workers):
    client = two_workers.client()
    estimate = client.post("/v1/jobs/estimate", json=atlas_body())
    assert estimate.status_code == 200, estimate.text
    body = estimate.json()
    assert body["kind"] == "atlas" and body["seconds"]["cpu"] > 0 and "6 units" in body["basis"]
    lighter = client.post("/v1/jobs/estimate", json=atlas_body(feature_visualization=None)).json()
    assert lighter["seconds"]["cpu"] < body["seconds"]["cpu"]  # the renderings are part of the cost
