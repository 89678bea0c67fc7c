"""deconvnet jobs through HTTP, checked against the literal Z&F reference of the core tests."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.e2e.test_jobs_api import assert_problem
from tests.worker.core.test_deconvnet import literal_projection
from worker.core.imaging import prepare_images
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, shapes_val


@pytest.fixture(scope="module")
def deconv_stack(redis_url, tmp_path_factory):
    from tests.conftest import started_stack

    with started_stack(redis_url, tmp_path_factory) as stack:
        yield stack


def submit(stack, client, **params) -> dict:
    response = client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": params})
    assert response.status_code == 202, response.text
    done = stack.wait_status(client, response.json()["id"], {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    return done


def artifact(client, job, name) -> bytes:
    ref = next(a for a in job["result"]["artifacts"] if a["name"] == name)
    return client.get(ref["url"]).content


def png_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_dataset_job_writes_the_contract_artifacts_equal_to_the_literal_deconvnet(deconv_stack):
    client = deconv_stack.client()
    job = submit(deconv_stack, client, layer="features.6", dataset="shapes-val", top_channels=3, top_k=4)
    result = json.loads(artifact(client, job, "result.json"))
    reconstructions = np.load(io.BytesIO(artifact(client, job, "reconstructions.npy")))
    assert reconstructions.dtype == np.float32 and reconstructions.shape == (12, 3, 64, 64)
    items = result["items"]
    assert len(items) == 12 and len(result["channels"]) == 3
    names = {a["name"] for a in job["result"]["artifacts"]}
    assert {"grid.png", "result.json", "reconstructions.npy"} <= names
    assert sum(n.startswith("projection-") for n in names) == 12
    assert artifact(client, job, "grid.png")[:8] == b"\x89PNG\r\n\x1a\n"

    model = load_shapes_cnn()
    pictures, _ = shapes_val()
    for item in (items[0], items[5], items[11]):
        assert set(item) >= {"channel", "image_index", "image_name", "position", "activation", "receptive_field"}
        assert item["image_name"].startswith(f"{item['image_index']:04d}-")
        x = prepare_images([pictures[item["image_index"]]], SHAPES_INPUT, "cpu")
        with torch.no_grad():
            activation = model.features[:7](x)[0, item["channel"], item["position"][0], item["position"][1]]
        assert activation.item() == pytest.approx(item["activation"], rel=1e-5)
        with torch.no_grad():
            expected = literal_projection(list(model.features[:7]), x, item["channel"], item["position"], item["activation"])
        np.testing.assert_allclose(reconstructions[item["index"]], expected.numpy(), rtol=1e-4, atol=1e-6)
        y0, x0, y1, x1 = item["receptive_field"]
        assert (y1 - y0, x1 - x0) == (12, 12) or y0 == 0 or x0 == 0 or y1 == 64 or x1 == 64
    # Per channel, images in decreasing order of activation (Z&F's top k).
    first = [i["activation"] for i in items if i["channel"] == result["channels"][0]]
    assert first == sorted(first, reverse=True)
    again = submit(deconv_stack, client, layer="features.6", dataset="shapes-val", top_channels=3, top_k=4)
    assert {a["name"]: a["sha256"] for a in again["result"]["artifacts"]} == {
        a["name"]: a["sha256"] for a in job["result"]["artifacts"]
    }


def test_one_neuron_of_an_inline_image_and_dead_channels_are_reported(deconv_stack):
    client = deconv_stack.client()
    pictures, _ = shapes_val()
    model = load_shapes_cnn()
    with torch.no_grad():
        maps = model.features[:10](prepare_images([pictures[3]], SHAPES_INPUT, "cpu"))[0]
    channel = int(maps.amax(dim=(1, 2)).argmax())
    y, x = 7, 9  # any position: the neuron there is projected, even if it is not the strongest
    job = submit(deconv_stack, client, layer="features.9", images=[png_base64(pictures[3])], channels=[channel], position=[y, x])
    result = json.loads(artifact(client, job, "result.json"))
    assert [(i["channel"], i["position"], i["image_name"]) for i in result["items"]] == [(channel, [y, x], None)]
    assert result["items"][0]["activation"] == pytest.approx(float(maps[channel, y, x]), rel=1e-5, abs=1e-6)

    black = np.zeros((64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        maps = model.features[:2](prepare_images([black], SHAPES_INPUT, "cpu"))[0]
    dead = [c for c in range(16) if maps[c].max() <= 0]
    live = [c for c in range(16) if maps[c].max() > 0]
    assert dead and live
    job = submit(deconv_stack, client, layer="features.1", images=[png_base64(black)], channels=[dead[0], live[0]], top_k=1)
    result = json.loads(artifact(client, job, "result.json"))
    assert result["dead_channels"] == [dead[0]] and "never activate" in result["dead_channels_note"]
    assert [i["channel"] for i in result["items"]] == [live[0]]


def test_bad_deconvnet_requests_are_refused_with_the_valid_choices(deconv_stack):
    client = deconv_stack.client()

    def post(**params):
        return client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": params})

    unknown = assert_problem(post(layer="features.40", dataset="shapes-val"), 422)
    assert "features.6" in unknown["detail"]
    assert "0 to 15" in assert_problem(post(layer="features.1", dataset="shapes-val", channels=[16]), 422)["detail"]
    assert_problem(post(layer="features.1"), 422)  # no images
    assert_problem(post(layer="features.1", dataset="shapes-val", images=[png_base64(np.zeros((4, 4, 3), np.uint8))]), 422)
    assert_problem(post(layer="features.1", dataset="shapes-val", channels=[1], position=[1, 1]), 422)
    assert_problem(post(layer="features.1", images=["bm90IGFuIGltYWdl"]), 422)
    tabular = client.post("/v1/jobs", json={"kind": "deconvnet", "model": "retail-mlp", "params": {"layer": "act1", "dataset": "shapes-val"}})
    assert "image model" in assert_problem(tabular, 422)["detail"]
