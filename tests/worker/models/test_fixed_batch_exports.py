"""Models exported with a fixed batch size run every job kind, as models that take any batch do.

`torch.export.export(model, (example,))` keeps the example's batch size: such an archive refuses
any other. Glassbox finds the sizes an archive takes at inspection and feeds it only those
(worker/core/batching.py). The expectations are independent of that code: the built-in
shapes-cnn, an eager module that takes any batch, run by the same jobs.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from torch.export import Dim

from worker.core.batching import BatchSizes, confirm_batch_sizes, set_accepted_batch_sizes
from worker.core.probe import capture_activation, inspect_layers
from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, preprocess, shapes_val
from worker.models.uploaded import declared_batch_sizes, load_exported_program

# How each archive is exported, and the batch sizes it must be found to take.
EXPORTS = {
    "static": ((1,), None, {"min": 1, "max": 1}),  # the old README recipe
    "dynamic": ((2,), {0: Dim("batch")}, {"min": 1, "max": None}),  # the recommended one
    # Dim.AUTO declares a minimum of 2, but torch lets a batch of 1 through: found by running.
    "auto": ((2,), {0: Dim.AUTO}, {"min": 1, "max": None}),
    "min3-max8": ((4,), {0: Dim("batch", min=3, max=8)}, {"min": 3, "max": 8}),
}


def shapes_archive(how: str) -> bytes:
    (batch,), dims, _ = EXPORTS[how]
    example = torch.zeros(batch, 3, 64, 64)
    program = torch.export.export(
        load_shapes_cnn().eval(), (example,), dynamic_shapes=(dims,) if dims is not None else None
    )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    return {how: shapes_archive(how) for how in EXPORTS}


def sizes_seen(model: torch.nn.Module) -> list[int]:
    """Batch sizes the model's forward is called with, recorded by a hook on it."""
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, inputs: seen.append(int(inputs[0].shape[0])))
    return seen


# --- the core: chunked forward and backward against one unchunked pass ---


@pytest.mark.parametrize(
    ("sizes", "count", "expected_calls"),
    [
        (BatchSizes(1, 1), 5, [1, 1, 1, 1, 1]),
        (BatchSizes(3, 8), 10, [8, 3]),  # 8, then 2 padded to 3
        (BatchSizes(3, 8), 2, [3]),
        (BatchSizes(3, 8), 5, [5]),  # accepted: passed as it is
        (BatchSizes(4, 4), 9, [4, 4, 4]),
        (BatchSizes(), 33, [33]),  # takes any: never cut
    ],
)
def test_capture_in_accepted_pieces_equals_one_pass_in_value_and_gradient(sizes, count, expected_calls):
    reference = load_shapes_cnn().eval()
    model = load_shapes_cnn().eval()
    set_accepted_batch_sizes(model, sizes)
    seen = sizes_seen(model)
    x = preprocess(shapes_val()[0][:count])
    shape = capture_activation(reference, x, "features.6").shape
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(0))  # a seed per neuron

    def value_and_gradient(net):
        inputs = x.clone().requires_grad_(True)
        act = capture_activation(net, inputs, "features.6")
        (gradient,) = torch.autograd.grad((act * weights).sum(), inputs)
        return act.detach(), gradient

    expected_act, expected_grad = value_and_gradient(reference)
    act, grad = value_and_gradient(model)
    assert seen == expected_calls
    assert act.shape == expected_act.shape
    torch.testing.assert_close(act, expected_act, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_layers_are_inspected_in_one_padded_pass():
    model = load_shapes_cnn().eval()
    expected = inspect_layers(model, torch.zeros(1, 3, 64, 64))
    set_accepted_batch_sizes(model, BatchSizes(3, 3))
    seen = sizes_seen(model)
    assert inspect_layers(model, torch.zeros(1, 3, 64, 64)) == expected
    assert seen == [3]


@pytest.mark.parametrize("how", list(EXPORTS))
def test_archives_declare_and_confirm_their_batch_sizes(archives, how):
    program = torch.export.load(io.BytesIO(archives[how]))
    declared = declared_batch_sizes(program)
    module = program.module()
    confirmed = confirm_batch_sizes(module, torch.zeros(1, 3, 64, 64), declared)
    assert confirmed.to_dict() == EXPORTS[how][2]
    expected_declared = {"static": (1, 1), "dynamic": (1, None), "auto": (2, None), "min3-max8": (3, 8)}[how]
    assert (declared.min, declared.max) == expected_declared


@pytest.mark.parametrize("how", ["static", "min3-max8"])
def test_a_loaded_archive_runs_any_batch_like_the_eager_model(archives, how):
    module = load_exported_program(archives[how])
    x = preprocess(shapes_val()[0][:11])
    with pytest.raises(RuntimeError):
        module(x)  # the archive itself refuses the batch
    torch.testing.assert_close(
        capture_activation(module, x, "classifier.2"),
        capture_activation(load_shapes_cnn().eval(), x, "classifier.2"),
        rtol=1e-5,
        atol=1e-5,
    )


# --- through HTTP: uploads exported each way, every image job kind, against shapes-cnn ---

UPLOADED = ["static", "dynamic", "min3-max8"]


@pytest.fixture(scope="module")
def batch_stack(redis_url, tmp_path_factory):
    from tests.conftest import started_stack

    with started_stack(redis_url, tmp_path_factory) as stack:
        yield stack


@pytest.fixture(scope="module")
def uploaded(batch_stack, archives) -> dict[str, dict]:
    """Each archive uploaded as `shapes-<how>`, and its finished inspection job."""
    from worker.models.shapes import SHAPES_CLASSES

    client = batch_stack.client()
    inspections = {}
    for how in UPLOADED:
        manifest = {
            "name": f"shapes-{how}", "kind": "image", "format": "exported_program",
            "input": SHAPES_INPUT, "labels": SHAPES_CLASSES,
        }  # fmt: skip
        response = client.post(
            "/v1/models", files={"file": ("net.pt2", archives[how])}, data={"manifest": json.dumps(manifest)}
        )
        assert response.status_code == 202, response.text
        inspections[how] = response.json()["inspection_job"]
    return {
        how: batch_stack.wait_status(client, job_id, {"succeeded", "failed"}, timeout=120)
        for how, job_id in inspections.items()
    }


def run_everywhere(stack, kind: str, params: dict) -> dict[str, dict]:
    """The same job on shapes-cnn and on every upload (submitted together, then awaited)."""
    client = stack.client()
    models = {"builtin": "shapes-cnn", **{how: f"shapes-{how}" for how in UPLOADED}}
    created = {}
    for name, model in models.items():
        response = client.post("/v1/jobs", json={"kind": kind, "model": model, "params": params})
        assert response.status_code == 202, response.text
        created[name] = response.json()["id"]
    done = {name: stack.wait_status(client, job_id, {"succeeded", "failed"}, timeout=240) for name, job_id in created.items()}
    for name, job in done.items():
        assert job["status"] == "succeeded", (name, job["error"])
    return done


def artifact(stack, job: dict, name: str) -> bytes:
    response = stack.client().get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response.content


def test_uploads_are_inspected_with_the_batch_sizes_they_take(batch_stack, uploaded):
    client = batch_stack.client()
    inspection = run_everywhere(batch_stack, "model_inspection", {})
    builtin_layers = json.loads(artifact(batch_stack, inspection["builtin"], "result.json"))["layer_list"]
    expected = {layer["name"]: layer["output_shape"] for layer in builtin_layers}
    for how in UPLOADED:
        assert uploaded[how]["status"] == "succeeded", uploaded[how]["error"]
        record = client.get(f"/v1/models/shapes-{how}").json()
        assert record["status"] == "ready" and record["batch"] == EXPORTS[how][2]
        layers = json.loads(artifact(batch_stack, inspection[how], "result.json"))["layer_list"]
        shapes = {layer["name"]: layer["output_shape"] for layer in layers}
        assert {name: shapes.get(name) for name in expected if name.count(".") == 1} == {
            name: shape for name, shape in expected.items() if name.count(".") == 1
        }
    assert client.get("/v1/models/shapes-cnn").json()["batch"] == {"min": 1, "max": None}


def test_deconvnet_over_a_dataset_gives_the_builtin_models_projections(batch_stack, uploaded):
    params = {"layer": "features.6", "dataset": "shapes-val", "channels": [2, 7, 11], "top_k": 3}
    jobs = run_everywhere(batch_stack, "deconvnet", params)
    expected_items = json.loads(artifact(batch_stack, jobs["builtin"], "result.json"))["items"]
    expected = np.load(io.BytesIO(artifact(batch_stack, jobs["builtin"], "reconstructions.npy")))
    assert expected.shape == (9, 3, 64, 64) and np.abs(expected).max() > 0
    for how in UPLOADED:
        items = json.loads(artifact(batch_stack, jobs[how], "result.json"))["items"]
        key = ("channel", "image_index", "position", "receptive_field")
        assert [[item[k] for k in key] for item in items] == [[item[k] for k in key] for item in expected_items]
        np.testing.assert_allclose([i["activation"] for i in items], [i["activation"] for i in expected_items], rtol=1e-5)
        reconstructions = np.load(io.BytesIO(artifact(batch_stack, jobs[how], "reconstructions.npy")))
        np.testing.assert_allclose(reconstructions, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_activation_maximization_of_several_units_gives_the_builtin_models_images(batch_stack, uploaded):
    # SGD, not Adam: Adam divides each gradient element by its own magnitude, so the last-bit
    # differences between a convolution over 6 images and 6 over one image (both correct) grow
    # into visible ones on an image or two within a few steps; SGD keeps them at float level.
    params = {
        "objective": {"type": "class", "units": [0, 3, 6]}, "images_per_unit": 2, "diversity": 0.5,
        "size": 64, "steps": 16, "optimizer": "sgd", "lr": 0.3, "seed": 3, "reference_dataset": "shapes-val",
    }  # fmt: skip
    jobs = run_everywhere(batch_stack, "activation_maximization", params)
    expected = np.load(io.BytesIO(artifact(batch_stack, jobs["builtin"], "images.npy")))
    expected_result = json.loads(artifact(batch_stack, jobs["builtin"], "result.json"))
    assert expected.shape == (6, 3, 64, 64)
    # The optimization moved every image: a wrong gradient could not give the same images.
    assert all(image["history"][-1] > image["history"][0] + 1.0 for image in expected_result["images"])
    for how in UPLOADED:
        images = np.load(io.BytesIO(artifact(batch_stack, jobs[how], "images.npy")))
        np.testing.assert_allclose(images, expected, atol=1e-4)
        result = json.loads(artifact(batch_stack, jobs[how], "result.json"))
        for field in ("activation", "robust_activation", "dataset_max"):
            np.testing.assert_allclose(
                [image[field] for image in result["images"]],
                [image[field] for image in expected_result["images"]],
                rtol=1e-4, atol=1e-4,
            )  # fmt: skip


def test_tabular_attribution_of_an_exported_tabular_model_equals_the_builtin_ones(batch_stack):
    """Attribution methods evaluate the model on many rows at once (integration paths,
    coalitions): a tabular archive exported with a batch of 1 gives retail-mlp's results."""
    from worker.models.builtin import BUILTIN_MODELS
    from worker.models.tabular import encoded_width

    builtin = BUILTIN_MODELS["retail-mlp"]
    example = torch.zeros(1, encoded_width(builtin.input["tabular"]["features"]))
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(builtin.build().eval(), (example,)), buffer)
    client = batch_stack.client()
    manifest = {"name": "retail-static", "kind": "tabular", "format": "exported_program", "input": builtin.input}
    response = client.post(
        "/v1/models", files={"file": ("net.pt2", buffer.getvalue())}, data={"manifest": json.dumps(manifest)}
    )
    assert response.status_code == 202, response.text
    inspected = batch_stack.wait_status(client, response.json()["inspection_job"], {"succeeded", "failed"}, timeout=120)
    assert inspected["status"] == "succeeded", inspected["error"]
    assert client.get("/v1/models/retail-static").json()["batch"] == {"min": 1, "max": 1}
    for params in (
        {"dataset": "retail-sample", "sample": 12, "seed": 1, "method": "integrated_gradients", "n_steps": 16},
        {"dataset": "retail-sample", "sample": 12, "seed": 1, "method": "feature_ablation",
         "target": {"type": "neuron", "layer": "act1", "unit": 3}},
    ):  # fmt: skip
        jobs = {}
        for model in ("retail-mlp", "retail-static"):
            created = client.post("/v1/jobs", json={"kind": "tabular_attribution", "model": model, "params": params})
            assert created.status_code == 202, created.text
            jobs[model] = batch_stack.wait_status(client, created.json()["id"], {"succeeded", "failed"}, timeout=120)
            assert jobs[model]["status"] == "succeeded", jobs[model]["error"]
        expected, got = (json.loads(artifact(batch_stack, jobs[m], "result.json"))["rows"] for m in jobs)
        assert [row["index"] for row in got] == [row["index"] for row in expected]
        for row, expected_row in zip(got, expected):
            assert row["attributions"].keys() == expected_row["attributions"].keys()
            np.testing.assert_allclose(
                [row["attributions"][k] for k in row["attributions"]] + [row["output"]],
                [expected_row["attributions"][k] for k in row["attributions"]] + [expected_row["output"]],
                rtol=1e-4, atol=1e-5,
            )  # fmt: skip
        assert any(abs(v) > 1e-3 for row in expected for v in row["attributions"].values())
