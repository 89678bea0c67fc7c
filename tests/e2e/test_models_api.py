"""Models and datasets through HTTP: built-ins, torchvision, uploads, inspection, the cache."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors
from torch import nn

from tests.conftest import wait_until
from tests.e2e.test_jobs_api import assert_problem
from worker.models.shapes import SHAPES_CLASSES, ShapesCNN


@pytest.fixture(scope="module")
def models_stack(redis_url, tmp_path_factory):
    from tests.conftest import Stack

    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"), max_upload_bytes=2_000_000)
    # No network here; a private torch hub cache keeps the test from finding weights elsewhere.
    stack.env["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    stack.start_api()
    stack.start_worker()
    yield stack
    stack.stop()


def run_job(stack, client, model: str, kind: str = "model_inspection", timeout: float = 90) -> dict:
    job = client.post("/v1/jobs", json={"kind": kind, "model": model})
    assert job.status_code == 202, job.text
    return stack.wait_status(client, job.json()["id"], {"succeeded", "failed"}, timeout=timeout)


def expected_shapes_cnn_layers() -> list[tuple[str, list[int]]]:
    """An independent walk of shapes-cnn: its modules applied one by one."""
    model = ShapesCNN().eval()
    x = torch.zeros(1, 3, 64, 64)
    expected = []
    for index, layer in enumerate(model.features):
        x = layer(x)
        expected.append((f"features.{index}", list(x.shape[1:])))
    expected.append(("features", list(x.shape[1:])))
    x = model.pool(x)
    expected.append(("pool", list(x.shape[1:])))
    x = torch.flatten(x, 1)
    for index, layer in enumerate(model.classifier):
        x = layer(x)
        expected.append((f"classifier.{index}", list(x.shape[1:])))
    expected.append(("classifier", list(x.shape[1:])))
    return expected


def test_builtin_models_are_listed_ready_with_their_layers(models_stack):
    client = models_stack.client()
    listed = {m["id"]: m for m in client.get("/v1/models").json()}
    assert {"shapes-cnn", "retail-mlp", "diabetes-mlp", "torchvision/vgg16", "torchvision/resnet50"} <= set(listed)
    shapes = client.get("/v1/models/shapes-cnn").json()
    assert shapes["status"] == "ready" and shapes["labels"] == SHAPES_CLASSES
    assert shapes["input"]["image"]["size"] == [64, 64]
    assert [(l["name"], l["output_shape"]) for l in shapes["layers"]] == expected_shapes_cnn_layers()
    retail = client.get("/v1/models/retail-mlp").json()
    names = [f["name"] for f in retail["input"]["tabular"]["features"]]
    assert {"item_category", "season", "price", "promotion", "region"} <= set(names)
    assert [l["name"] for l in retail["layers"]][:4] == ["hidden1", "act1", "hidden2", "act2"]
    assert_problem(client.get("/v1/models/no-such-model"), 404)


def test_builtin_datasets_are_listed(models_stack):
    client = models_stack.client()
    datasets = {d["id"]: d for d in client.get("/v1/datasets").json()}
    assert datasets["shapes-val"]["count"] >= 300 and datasets["shapes-val"]["image_size"] == [64, 64]
    retail = client.get("/v1/datasets/retail-sample").json()
    assert retail["kind"] == "table" and retail["count"] == 3000
    types = {c["name"]: c["type"] for c in retail["columns"]}
    assert types["price"] == "numeric" and types["item_category"] == "categorical"
    assert datasets["diabetes"]["count"] == 442


def test_torchvision_random_weights_are_inspected_and_pretrained_ones_fail_clearly_offline(models_stack):
    client = models_stack.client()
    done = run_job(models_stack, client, "torchvision/resnet18?weights=random&seed=0")
    assert done["status"] == "succeeded", done["error"]
    resnet = client.get("/v1/models/torchvision/resnet18").json()
    names = [l["name"] for l in resnet["layers"]]
    assert "layer1.0.relu" in names and "layer1.0.relu@1" in names  # the reused ReLU, per call
    assert resnet["input"]["image"]["size"] == [224, 224] and len(resnet["labels"]) == 1000
    offline = run_job(models_stack, client, "torchvision/alexnet")
    assert offline["status"] == "failed" and offline["error"]["type"] == "weights-unavailable"
    assert "alexnet-owt-7be5be79.pth" in offline["error"]["detail"]
    assert models_stack.env["TORCH_HOME"] in offline["error"]["detail"]
    bad = client.post("/v1/jobs", json={"kind": "model_inspection", "model": "torchvision/vgg16?weights=imagenet"})
    assert assert_problem(bad, 422)["errors"][0]["loc"] == ["body", "model"]


class UploadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


def exported_archive() -> bytes:
    program = torch.export.export(UploadNet().eval(), (torch.zeros(1, 3, 16, 16),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def manifest(name: str, **changes) -> str:
    body = {
        "name": name,
        "kind": "image",
        "format": "exported_program",
        "input": {"image": {"size": [16, 16], "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}},
        "labels": ["a", "b"],
    }
    body.update(changes)
    return json.dumps(body)


def upload(client, name: str, data: bytes, manifest_text: str, filename: str = "model.pt2"):
    return client.post("/v1/models", files={"file": (filename, data)}, data={"manifest": manifest_text})


def test_an_exported_program_upload_is_inspected_then_cached_between_jobs(models_stack):
    client = models_stack.client()
    response = upload(client, "uploaded-net", exported_archive(), manifest("uploaded-net"))
    assert response.status_code == 202, response.text
    pending = response.json()
    assert pending["status"] == "pending" and response.headers["Location"] == "/v1/models/uploaded-net"
    first = models_stack.wait_status(client, pending["inspection_job"], {"succeeded", "failed"}, timeout=60)
    assert first["status"] == "succeeded", first["error"]
    model = client.get("/v1/models/uploaded-net").json()
    assert model["status"] == "ready"
    layers = {l["name"]: l["output_shape"] for l in model["layers"]}
    assert layers["conv"] == [4, 16, 16] and layers[":relu"] == [4, 16, 16] and layers["fc"] == [2]
    assert {l["name"]: l["type"] for l in model["layers"]}["conv"] == "Conv2d"
    second = run_job(models_stack, client, "uploaded-net")
    assert second["result"]["summary"]["cache_hit"] is True  # the second job does not reload
    assert first["result"]["summary"]["cache_hit"] is False
    # Another tenant sees nothing of it.
    assert_problem(models_stack.client(key="key-bob-0123456789").get("/v1/models/uploaded-net"), 404)
    assert upload(client, "uploaded-net", exported_archive(), manifest("uploaded-net")).status_code == 409
    prefix = json.loads(models_stack.redis.hget(f"{models_stack.namespace}:models:alice", "uploaded-net"))["prefix"]
    assert [b.key for b in models_stack.blob_store().list_blobs(prefix)] == [f"{prefix}/model.pt2"]
    assert client.delete("/v1/models/uploaded-net").status_code == 204
    assert_problem(client.get("/v1/models/uploaded-net"), 404)
    # The file goes at the reaper's next sweep, and its lease with it.
    wait_until(lambda: not list(models_stack.blob_store().list_blobs(prefix)), timeout=20, what="the file's deletion")
    wait_until(lambda: models_stack.redis.zscore(f"{models_stack.namespace}:blob-leases", prefix) is None, timeout=20,
               what="the lease to go")  # fmt: skip
    assert_problem(client.delete("/v1/models/shapes-cnn"), 409)


def test_safetensors_uploads_fit_their_architecture_or_fail_with_the_reason(models_stack):
    client = models_stack.client()
    good = save_safetensors(ShapesCNN().state_dict())
    body = manifest(
        "my-shapes", format="safetensors", architecture="shapes-cnn",
        input={"image": {"size": [64, 64], "channels": 3}}, labels=None,
    )  # fmt: skip
    response = upload(client, "my-shapes", good, body, "w.safetensors")
    assert response.status_code == 202, response.text
    done = models_stack.wait_status(client, response.json()["inspection_job"], {"succeeded", "failed"})
    assert done["status"] == "succeeded" and client.get("/v1/models/my-shapes").json()["status"] == "ready"

    state = ShapesCNN().state_dict()
    state.pop("classifier.2.bias")
    broken = upload(client, "broken-shapes", save_safetensors(state), body.replace("my-shapes", "broken-shapes"))
    failed = models_stack.wait_status(client, broken.json()["inspection_job"], {"succeeded", "failed"})
    assert failed["status"] == "failed" and "missing keys: classifier.2.bias" in failed["error"]["detail"]
    record = client.get("/v1/models/broken-shapes").json()
    assert record["status"] == "failed" and "classifier.2.bias" in record["error"]


def no_trace_left(stack, name: str, collection: str = "models") -> bool:
    leases = [p.decode() for p in stack.redis.zrange(f"{stack.namespace}:blob-leases", 0, -1)]
    return (
        not stack.redis.hget(f"{stack.namespace}:{collection}:alice", name)
        and not list(stack.blob_store().list_blobs(f"{collection}/alice/{name}"))
        and not [p for p in leases if p.startswith(f"{collection}/alice/{name}/")]
    )


def test_bad_uploads_get_a_clear_problem_and_leave_nothing_behind(models_stack):
    client = models_stack.client()
    pickled = io.BytesIO()
    torch.save(UploadNet(), pickled)
    problem = assert_problem(upload(client, "p1", pickled.getvalue(), manifest("p1")), 422)
    assert problem["type"].endswith("pickled-upload") and "torch.export.save" in problem["detail"]
    raw_pickle = io.BytesIO()
    import pickle

    pickle.dump({"a": 1}, raw_pickle, protocol=4)
    assert_problem(upload(client, "p2", raw_pickle.getvalue(), manifest("p2")), 422)
    archive = exported_archive()
    assert "truncated" in assert_problem(
        upload(client, "p3", save_safetensors(ShapesCNN().state_dict())[:5000], manifest("p3", format="safetensors", architecture="shapes-cnn")),
        422,
    )["detail"]
    assert_problem(upload(client, "p4", b"\x00" * 100 + b"random", manifest("p4")), 422)
    assert_problem(upload(client, "p5", archive[: len(archive) // 2], manifest("p5")), 422)
    invalid = assert_problem(upload(client, "p6", archive, manifest("p6", kind="image", input={})), 422)
    assert invalid["errors"][0]["loc"][:2] == ["body", "manifest"]
    assert_problem(upload(client, "p7", archive, "{not json"), 422)
    wrong_arch = assert_problem(
        upload(client, "p8", b"x", manifest("p8", format="safetensors", architecture="torchvision/nope")), 422
    )
    assert "torchvision/<name>" in wrong_arch["detail"]
    assert_problem(upload(client, "p9", b"0" * 2_100_000, manifest("p9")), 413)
    for name in ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"):
        assert no_trace_left(models_stack, name), name
    jobs = client.get("/v1/jobs", params={"kind": "model_inspection", "page_size": 200}).json()["items"]
    assert not [j for j in jobs if j["model"].startswith("p") and len(j["model"]) == 2]


def png(size=(8, 6), colour=(255, 0, 0)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_dataset_uploads_are_checked_and_described(models_stack):
    client = models_stack.client()
    images = zipped({"b.png": png(), "a.png": png(colour=(0, 255, 0)), "__MACOSX/._a.png": b"junk"})
    created = client.post("/v1/datasets", files={"file": ("pics.zip", images)}, data={"name": "pics"})
    assert created.status_code == 201, created.text
    assert created.json()["count"] == 2 and created.json()["image_size"] == [6, 8]
    assert client.get("/v1/datasets/pics").json()["kind"] == "images"

    table = b"city,temp,rain\nParis,12.5,yes\nOslo,-3,no\nRome,,no\n"
    described = client.post("/v1/datasets", files={"file": ("weather.csv", table)}).json()
    assert described["id"] == "weather" and described["count"] == 3
    assert described["columns"] == [
        {"name": "city", "type": "categorical", "missing": 0, "categories": ["Oslo", "Paris", "Rome"]},
        {"name": "temp", "type": "numeric", "missing": 1},
        {"name": "rain", "type": "categorical", "missing": 0, "categories": ["no", "yes"]},
    ]
    cases = [
        ("evil.zip", zipped({"../evil.png": png()}), "unsafe path"),
        ("bomb.zip", zipped({"zeros.png": b"\0" * 50_000_000}), "zip bomb"),
        ("corrupt.zip", zipped({"ok.png": png(), "bad.png": png()[:40]}), "'bad.png'"),
        ("text.zip", zipped({"notes.txt": b"hello"}), "'notes.txt'"),
        ("pixels.zip", zipped({"huge.png": png(size=(6000, 6000))}), "decompression bomb"),
        ("nan.csv", b"a,b\n1,2\nnan,3\n", "row 2, column 'a'"),
        ("ragged.csv", b"a,b\n1,2\n3\n", "row 2"),
        ("empty.csv", b"", "header"),
        ("fake.zip", b"not a zip", "not a zip"),
    ]
    for filename, data, needle in cases:
        problem = assert_problem(client.post("/v1/datasets", files={"file": (filename, data)}), 422)
        assert needle in problem["detail"], (filename, problem["detail"])
        assert no_trace_left(models_stack, filename.split(".")[0], "datasets"), filename
    assert client.delete("/v1/datasets/pics").status_code == 204
    assert_problem(client.get("/v1/datasets/pics"), 404)
    assert_problem(client.delete("/v1/datasets/shapes-val"), 409)


def test_jobs_naming_an_unknown_layer_or_unit_get_a_422_listing_the_valid_choices(models_stack):
    client = models_stack.client()

    def submit(**params):
        return client.post("/v1/jobs", json={"kind": "test-layer-probe", "model": "shapes-cnn", "params": params})

    unknown = assert_problem(submit(layer="features.99"), 422)
    assert unknown["errors"][0]["loc"] == ["body", "params", "layer"]
    assert "features.0" in unknown["detail"] and "classifier.2" in unknown["detail"]
    layers = {l["name"]: l for l in client.get("/v1/models/shapes-cnn").json()["layers"]}
    channels = layers["features.0"]["units"]
    out_of_range = assert_problem(submit(layer="features.0", units=[0, channels]), 422)
    assert out_of_range["errors"][0]["loc"] == ["body", "params", "units", 1]
    assert f"0 to {channels - 1}" in out_of_range["detail"]
    outside = assert_problem(submit(layer="features.0", position=[64, 0]), 422)
    assert "64x64" in outside["detail"]
    accepted = submit(layer="features.0", units=[channels - 1], position=[63, 63])
    assert accepted.status_code == 202
    done = models_stack.wait_status(client, accepted.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded" and done["result"]["summary"]["model_status"] == "ready"


def test_a_tabular_upload_names_its_features_and_gets_its_layers(models_stack):
    from worker.models.retail import RETAIL_FEATURES
    from worker.models.tabular import TabularMLP, encoded_width

    client = models_stack.client()
    model = TabularMLP(encoded_width(RETAIL_FEATURES), 1, (8,))
    body = json.dumps(
        {
            "name": "my-retail",
            "kind": "tabular",
            "format": "safetensors",
            "architecture": "tabular-mlp",
            "input": {"tabular": {"features": RETAIL_FEATURES}},
        }
    )
    response = upload(client, "my-retail", save_safetensors(model.state_dict()), body, "w.safetensors")
    assert response.status_code == 202, response.text
    done = models_stack.wait_status(client, response.json()["inspection_job"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    record = client.get("/v1/models/my-retail").json()
    assert [(l["name"], l["output_shape"]) for l in record["layers"]] == [
        ("hidden1", [8]), ("act1", [8]), ("out", [1]),
    ]  # fmt: skip
    categorical_without_categories = json.loads(body)
    categorical_without_categories["input"]["tabular"]["features"][0].pop("categories")
    problem = assert_problem(
        upload(client, "bad-retail", b"x", json.dumps({**categorical_without_categories, "name": "bad-retail"})), 422
    )
    assert "categories" in problem["detail"]
