"""Models beyond ReLU CNNs through HTTP: torchvision vit_b_16, convnext_tiny and efficientnet_b0
with random weights (the worker builds them offline). A transformer's layers are listed
features first with their token grid and the MLP hidden layers named; activation maximization
runs on them; deconvnet and guided backprop are refused where they are not defined, at submit
when the layers are recorded and on the worker when they are not; saliency runs."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from service.model_refs import parse_model_ref
from tests.e2e.test_jobs_api import assert_problem
from worker.core.imaging import prepare_images
from worker.models.torchvision_models import load_torchvision

pytestmark = pytest.mark.slow

VIT = "torchvision/vit_b_16?weights=random&seed=0"
CONVNEXT = "torchvision/convnext_tiny?weights=random&seed=0"
EFFICIENTNET = "torchvision/efficientnet_b0?weights=random&seed=0"
MLP_HIDDEN = "encoder.layers.encoder_layer_0.mlp.1"  # the GELU of vit_b_16's first MLP block


def run(stack, client, kind: str, model: str, params: dict, timeout: float = 150) -> dict:
    response = client.post("/v1/jobs", json={"kind": kind, "model": model, "params": params})
    assert response.status_code == 202, response.text
    return stack.wait_status(client, response.json()["id"], {"succeeded", "failed"}, timeout=timeout)


def listing(stack, client, model: str) -> dict[str, dict]:
    """The model's layers by name, inspecting it first where no job has loaded it yet."""
    record = client.get(f"/v1/models/{model.partition('?')[0]}").json()
    if not record.get("layers"):
        done = run(stack, client, "model_inspection", model, {})
        assert done["status"] == "succeeded", done["error"]
        record = client.get(f"/v1/models/{model.partition('?')[0]}").json()
    return {layer["name"]: layer for layer in record["layers"]}


def artifact(client, job: dict, name: str) -> bytes:
    response = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, (name, response.text)
    return response.content


def pictures(count: int) -> list[np.ndarray]:
    """Small random pictures (the job resizes them to 224x224): inline requests stay small."""
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(count)]


def png_base64(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_efficientnet_deconvnet_fails_on_the_worker_when_unchecked_at_submit_and_saliency_runs(stack):
    client = stack.client()
    images = pictures(2)
    params = {
        "layer": "features.1.0.block.0.2",
        "images": [png_base64(p) for p in images],
        "channels": [0, 5],
        "top_k": 1,
    }
    # No job has loaded the model: its layers are unknown at submit, the worker checks.
    assert not client.get("/v1/models/torchvision/efficientnet_b0").json().get("layers")
    refused = run(stack, client, "deconvnet", EFFICIENTNET, {**params, "method": "deconvnet"})
    assert refused["status"] == "failed" and refused["error"]["type"] == "invalid-params", refused["error"]
    assert "SiLU" in refused["error"]["detail"] and "Methods that apply: saliency" in refused["error"]["detail"]
    # Now that it is recorded, the same request is a 422 at submit.
    problem = assert_problem(
        client.post(
            "/v1/jobs",
            json={"kind": "deconvnet", "model": EFFICIENTNET, "params": {**params, "method": "guided_backprop"}},
        ),
        422,
    )
    assert problem["errors"][0]["loc"] == ["body", "params", "method"] and "saliency" in problem["detail"]

    done = run(stack, client, "deconvnet", EFFICIENTNET, {**params, "method": "saliency"})
    assert done["status"] == "succeeded", done["error"]
    result = json.loads(artifact(client, done, "result.json"))
    reconstructions = np.load(io.BytesIO(artifact(client, done, "reconstructions.npy")))
    assert reconstructions.shape == (2, 3, 224, 224) and np.isfinite(reconstructions).all()
    record = client.get("/v1/models/torchvision/efficientnet_b0").json()
    model = load_torchvision(parse_model_ref(EFFICIENTNET))
    for item in result["items"]:
        # The activation is the SiLU's output where the worker says, on the same random weights.
        x = prepare_images([images[item["image_index"]]], record["input"], "cpu").requires_grad_(True)
        value = model.features[1][0].block[0](model.features[0](x))[(0, item["channel"], *item["position"])]
        assert value.item() == pytest.approx(item["activation"], rel=1e-4, abs=1e-5)
        (gradient,) = torch.autograd.grad(value, x)  # saliency: the plain gradient, seeded with the value
        np.testing.assert_allclose(
            reconstructions[item["index"]], (gradient * value.detach())[0].numpy(), rtol=1e-3, atol=1e-7
        )


def test_vit_is_listed_features_first_with_its_patch_grid_and_deconvnet_is_refused(stack):
    client = stack.client()
    layers = listing(stack, client, VIT)
    hidden = layers[MLP_HIDDEN]
    assert (hidden["layout"], hidden["output_shape"], hidden["units"], hidden["raw_shape"]) == (
        "tokens", [3072, 197], 3072, [197, 3072],
    )  # fmt: skip
    assert (hidden["token_grid"], hidden["prefix_tokens"]) == ([14, 14], 1) and "activation maximization" in hidden[
        "note"
    ]
    assert layers["conv_proj"]["layout"] == "channels_first" and layers["conv_proj"]["output_shape"] == [768, 14, 14]
    noted = sorted(name for name, layer in layers.items() if layer.get("note"))
    assert noted == sorted(f"encoder.layers.encoder_layer_{i}.mlp.1" for i in range(12))
    image = png_base64(pictures(1)[0])
    for method in ("deconvnet", "guided_backprop"):
        body = {"layer": MLP_HIDDEN, "images": [image], "method": method}
        problem = assert_problem(client.post("/v1/jobs", json={"kind": "deconvnet", "model": VIT, "params": body}), 422)
        assert problem["errors"][0]["loc"] == ["body", "params", "method"]
        assert (
            "saliency" in problem["detail"]
            and "GELU" in problem["detail"]
            and "MultiheadAttention" in problem["detail"]
        )
    # A position is [token]; saliency of one token's feature: its receptive field is its patch.
    wrong = {"layer": MLP_HIDDEN, "images": [image], "channels": [7], "position": [3, 4], "method": "saliency"}
    problem = assert_problem(client.post("/v1/jobs", json={"kind": "deconvnet", "model": VIT, "params": wrong}), 422)
    assert problem["errors"][0]["loc"] == ["body", "params", "position"] and "[token]" in problem["detail"]
    done = run(stack, client, "deconvnet", VIT, {**wrong, "position": [17]})
    assert done["status"] == "succeeded", done["error"]
    (item,) = json.loads(artifact(client, done, "result.json"))["items"]
    assert item["position"] == [17] and item["receptive_field"] == [16, 32, 32, 48]  # token 17: row 1, column 2


def test_convnext_deconvnet_and_atlas_are_refused_naming_method_and_saliency(stack):
    client = stack.client()
    layers = listing(stack, client, CONVNEXT)
    layer = "features.1.0.block.4"
    assert (layers[layer]["layout"], layers[layer]["output_shape"]) == ("channels_last", [384, 56, 56])
    image = png_base64(pictures(1)[0])
    body = {"layer": layer, "images": [image], "method": "deconvnet"}
    problem = assert_problem(
        client.post("/v1/jobs", json={"kind": "deconvnet", "model": CONVNEXT, "params": body}), 422
    )
    assert problem["errors"][0]["loc"] == ["body", "params", "method"]
    assert "GELU" in problem["detail"] and "saliency" in problem["detail"]
    atlas = {"layer": layer, "dataset": "shapes-val", "units": [0], "feature_visualization": None}
    problem = assert_problem(client.post("/v1/jobs", json={"kind": "atlas", "model": CONVNEXT, "params": atlas}), 422)
    assert problem["errors"][0]["loc"] == ["body", "params", "method"] and "saliency" in problem["detail"]


def test_activation_maximization_raises_a_vit_mlp_hidden_unit(stack):
    client = stack.client()
    listing(stack, client, VIT)
    params = {
        "objective": {"type": "channel", "layer": MLP_HIDDEN, "units": [11]},  # the mean over the 197 tokens
        "size": 64,
        "steps": 12,
        "transforms": "none",
    }
    done = run(stack, client, "activation_maximization", VIT, params)
    assert done["status"] == "succeeded", done["error"]
    (item,) = json.loads(artifact(client, done, "result.json"))["images"]
    history = item["history"]
    assert len(history) == 12 and history[-1] > history[0] + 0.2, history
    # The activation reported is the unit's mean over the tokens of the GELU's own [197, 3072]
    # output, on the delivered image (resized to 224 like any input), read with a plain hook.
    images = torch.from_numpy(np.load(io.BytesIO(artifact(client, done, "images.npy"))))
    spec = client.get("/v1/models/torchvision/vit_b_16").json()["input"]["image"]
    x = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(spec["mean"]).view(1, 3, 1, 1)) / torch.tensor(spec["std"]).view(1, 3, 1, 1)
    model = load_torchvision(parse_model_ref(VIT))
    outputs = []
    model.encoder.layers[0].mlp[1].register_forward_hook(lambda _m, _i, output: outputs.append(output))
    with torch.no_grad():
        model(x)
    assert outputs[0].shape == (1, 197, 3072)
    assert item["activation"] == pytest.approx(outputs[0][0, :, 11].mean().item(), rel=1e-3, abs=1e-4)


def test_a_vit_neuron_is_a_token_and_defaults_to_the_centre_patch(stack):
    client = stack.client()
    layers = listing(stack, client, VIT)
    rows, columns = layers[MLP_HIDDEN]["token_grid"]
    centre = layers[MLP_HIDDEN]["prefix_tokens"] + (rows // 2) * columns + columns // 2  # 1 + 7 * 14 + 7
    params = {"objective": {"type": "neuron", "layer": MLP_HIDDEN, "units": [11]}, "size": 32, "steps": 2}
    done = run(stack, client, "activation_maximization", VIT, params)
    assert done["status"] == "succeeded", done["error"]
    result = json.loads(artifact(client, done, "result.json"))
    assert result["objective"]["position"] == [centre] == [106]
    outside = client.post("/v1/jobs", json={"kind": "activation_maximization", "model": VIT, "params": {
        "objective": {"type": "neuron", "layer": MLP_HIDDEN, "units": [11], "position": [197]}}})  # fmt: skip
    assert assert_problem(outside, 422)["errors"][0]["loc"] == ["body", "params", "objective", "position"]
