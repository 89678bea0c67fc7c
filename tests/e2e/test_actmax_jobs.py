"""Activation maximization jobs through HTTP: a real API, worker and Redis (tests/conftest.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from service.kinds.activation_maximization import MAX_SIZE, MAX_STEPS
from tests.conftest import started_stack
from tests.e2e.test_jobs_api import assert_problem
from worker.models.shapes import SHAPES_CLASSES, SHAPES_INPUT, load_shapes_cnn

KIND = "activation_maximization"


@pytest.fixture(scope="module")
def actmax_stack(redis_url, tmp_path_factory):
    with started_stack(redis_url, tmp_path_factory) as stack:
        yield stack


def submit(client, params: dict, model: str = "shapes-cnn"):
    return client.post("/v1/jobs", json={"kind": KIND, "model": model, "params": params})


def artifact(client, job: dict, name: str) -> bytes:
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response.content


def test_every_class_rendered_with_defaults_beats_the_dataset_and_is_classified_as_itself(actmax_stack):
    """The issue's quality bar, with the default settings, through HTTP; and the artifact
    contract on the same job."""
    client = actmax_stack.client()
    params = {
        "objective": {"type": "class", "units": [*SHAPES_CLASSES[:5], 5, 6, 7, 8, 9]},  # labels or indices
        "reference_dataset": "shapes-val",
        "thresholds": [128],  # snapshots only: the optimization is the same
    }
    created = submit(client, params)
    assert created.status_code == 202, created.text
    done = actmax_stack.wait_status(client, created.json()["id"], {"succeeded", "failed"}, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    names = {a["name"] for a in done["result"]["artifacts"]}
    pngs = {f"image-{i:03d}.png" for i in range(10)}
    assert {"result.json", "images.npy", "grid.png", "snapshots.npy"} | pngs <= names

    images = np.load(io.BytesIO(artifact(client, done, "images.npy")))
    assert images.dtype == np.float32 and images.shape == (10, 3, 128, 128)
    assert images.min() >= 0.0 and images.max() <= 1.0
    snapshots = np.load(io.BytesIO(artifact(client, done, "snapshots.npy")))
    assert snapshots.shape == (1, 10, 3, 128, 128)
    assert Image.open(io.BytesIO(artifact(client, done, "image-009.png"))).size == (128, 128)
    grid = Image.open(io.BytesIO(artifact(client, done, "grid.png"))).size
    assert grid[0] >= 5 * 128 and 2 * 128 <= grid[1] < 5 * 128  # 10 units x 1 image: two rows of 5, full size

    result = json.loads(artifact(client, done, "result.json"))
    assert result["objective"]["layer"] == "classifier.2"  # class: the model's last layer
    assert result["objective"]["units"] == list(range(10)) and result["seed"] == 0
    assert (result["params"]["size"], result["params"]["steps"], result["params"]["lr"]) == (128, 256, 0.05)
    assert result["params"]["transforms"][0] == {"type": "pad", "pixels": 12, "mode": "constant"}
    assert result["images_shape"] == [10, 3, 128, 128] and result["snapshots"]["steps"] == [128]
    items = result["images"]
    assert [i["unit"] for i in items] == list(range(10)) and [i["label"] for i in items] == SHAPES_CLASSES
    report = [(i["label"], i["activation"], i["dataset_max"], i["top_label"]) for i in items]
    for item in items:
        assert len(item["history"]) == 256 and item["history"][-1] > item["history"][0]
        assert item["dataset_max_image"].endswith(".png") and item["robust_activation"] is not None
        assert item["ratio_to_dataset_max"] == pytest.approx(item["activation"] / item["dataset_max"], rel=1e-4)
        # the quality bar: above the strongest shapes-val example, and the model's top class
        assert item["ratio_to_dataset_max"] > 1.0, report
        assert item["is_top_unit"] is True and item["top_label"] == item["label"], report

    # `activation` is the model's logit on the delivered image, resized like any input
    model = load_shapes_cnn()
    x = torch.nn.functional.interpolate(torch.from_numpy(images), size=(64, 64), mode="bilinear", antialias=True)
    mean = torch.tensor(SHAPES_INPUT["image"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_INPUT["image"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((x - mean) / std)
    assert [i["activation"] for i in items] == pytest.approx(logits.diagonal().tolist(), rel=1e-3, abs=1e-3)
    assert logits.argmax(1).tolist() == list(range(10))
    summary = done["result"]["summary"]
    assert summary["objective"] == "class" and summary["images"] == 10 and all(summary["is_top_unit"])


def test_bad_layers_units_and_labels_get_a_422_with_the_valid_choices(actmax_stack):
    client = actmax_stack.client()
    unknown = assert_problem(
        submit(client, {"objective": {"type": "channel", "layer": "features.99", "units": [0]}}), 422
    )
    assert unknown["errors"][0]["loc"] == ["body", "params", "objective", "layer"]
    assert "features.0" in unknown["detail"] and "classifier.2" in unknown["detail"]
    unit = assert_problem(
        submit(client, {"objective": {"type": "channel", "layer": "features.0", "units": [3, 16]}}), 422
    )
    assert unit["errors"][0]["loc"] == ["body", "params", "objective", "units", 1] and "0 to 15" in unit["detail"]
    label = assert_problem(submit(client, {"objective": {"type": "class", "units": ["green circle"]}}), 422)
    assert "green circle" in label["detail"] and all(name in label["detail"] for name in SHAPES_CLASSES)
    cls = assert_problem(submit(client, {"objective": {"type": "class", "units": [10]}}), 422)
    assert "0 to 9" in cls["detail"]
    where = assert_problem(
        submit(client, {"objective": {"type": "neuron", "layer": "features.0", "units": [0], "position": [64, 3]}}), 422
    )
    assert "64x64" in where["detail"]
    vector = assert_problem(
        submit(client, {"objective": {"type": "direction", "layer": "features.3", "vector": [1.0, 2.0]}}), 422
    )
    assert "32 channels" in vector["detail"]
    tabular = assert_problem(
        submit(client, {"objective": {"type": "channel", "layer": "hidden1", "units": [0]}}, "retail-mlp"), 422
    )
    assert "image model" in tabular["detail"]


def test_sizes_and_steps_beyond_the_limits_get_a_422_naming_the_limit(actmax_stack):
    client = actmax_stack.client()
    objective = {"type": "class", "units": [0]}
    size = assert_problem(submit(client, {"objective": objective, "size": MAX_SIZE + 1}), 422)
    assert size["errors"][0]["loc"] == ["body", "params", "size"]
    assert f"limit of {MAX_SIZE}" in size["detail"] and "GLASSBOX_ACTMAX_MAX_SIZE" in size["detail"]
    steps = assert_problem(submit(client, {"objective": objective, "steps": MAX_STEPS + 1}), 422)
    assert f"limit of {MAX_STEPS}" in steps["detail"]
    units = assert_problem(submit(client, {"objective": {"type": "class", "units": list(range(10)) * 7}}), 422)
    assert "limit of" in units["detail"]


def test_cancel_takes_effect_between_steps(actmax_stack):
    client = actmax_stack.client()
    created = submit(
        client, {"objective": {"type": "channel", "layer": "features.3", "units": [1, 2]}, "steps": MAX_STEPS}
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    def stepping():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] == "running" and "activation" in job["progress"]["message"] else None

    from tests.conftest import wait_until

    running = wait_until(stepping, timeout=60, what="the job to report steps")
    assert running["progress"]["fraction"] < 0.9
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    canceled = actmax_stack.wait_status(client, job_id, {"canceled", "succeeded", "failed"}, timeout=20)
    assert canceled["status"] == "canceled"


def test_a_dead_objective_fails_with_a_clear_error(actmax_stack):
    client = actmax_stack.client()
    # classifier.1 unit 2 (a ReLU) never fires on shapes-val nor on the starting images
    created = submit(client, {"objective": {"type": "neuron", "layer": "classifier.1", "units": [2]}, "steps": 64})
    assert created.status_code == 202, created.text
    done = actmax_stack.wait_status(client, created.json()["id"], {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "failed" and done["error"]["type"] == "dead-objective"
    assert "classifier.1" in done["error"]["detail"]
