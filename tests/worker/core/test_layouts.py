"""Layer layouts: transformers' [tokens, features] and ConvNeXt's channels-last layers are listed
and captured channels first, tokens map to image patches, and the ReLU-only projection methods
are refused on networks that are not ReLU networks (torchvision models, random weights)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from service.catalogspec import ModelInfo
from service.kinds.atlas import AtlasParams, check_atlas
from service.kinds.deconvnet import DeconvnetParams, check_deconvnet
from service.kinds.layers import check_position
from service.model_refs import parse_model_ref
from service.validation import InvalidRequest
from worker.core.actmax.objectives import make_objective
from worker.core.actmax.param import make_param
from worker.core.actmax.render import ModelInput, render
from worker.core.actmax.transforms import make_transforms
from worker.core.deconvnet import Neuron, project, receptive_fields
from worker.core.probe import (
    capture_activation,
    capture_activations,
    inspect_layers,
    set_layer_layouts,
    token_box,
    token_grid,
)
from worker.core.relu_rules import NonReLUNonlinearity
from worker.models.torchvision_models import load_torchvision

MLP_HIDDEN = "encoder.layers.encoder_layer_0.mlp.1"  # vit_b_16: the GELU of the first block's MLP


def _listed(architecture: str, size: int):
    """The model (random weights, seed 0, as `torchvision/<arch>?weights=random&seed=0` loads it)
    with its layouts recorded the way the loader does, and its listing by name."""
    model = load_torchvision(parse_model_ref(f"torchvision/{architecture}?weights=random&seed=0"))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layers = inspect_layers(model, torch.zeros(1, 3, size, size))
    set_layer_layouts(model, {layer.name: layer.layout for layer in layers})
    return model, {layer.name: layer for layer in layers}


@pytest.fixture(scope="module")
def vit():
    return _listed("vit_b_16", 224)  # vit_b_16 takes 224x224 only


@pytest.fixture(scope="module")
def convnext():
    return _listed("convnext_tiny", 64)


@pytest.fixture(scope="module")
def efficientnet():
    return _listed("efficientnet_b0", 64)


class _Enough(Exception):
    pass


def plain_outputs(model: nn.Module, x: torch.Tensor, names: set[str], whole: bool = False) -> dict[str, torch.Tensor]:
    """The modules' own outputs, read with plain forward hooks; the forward pass stops once
    they all exist unless `whole`."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if name in names:

            def hook(_module, _inputs, output, name=name):
                outputs.setdefault(name, output[0] if isinstance(output, tuple) else output)
                if not whole and len(outputs) == len(names):
                    raise _Enough()

            handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    except _Enough:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def module_shapes(model: nn.Module, size: int) -> dict[str, list[int]]:
    names = {name for name, _ in model.named_modules() if name}
    with torch.no_grad():
        outputs = plain_outputs(model, torch.zeros(1, 3, size, size), names, whole=True)
    return {name: list(output.shape[1:]) for name, output in outputs.items()}


def test_vit_encoder_layers_are_tokens_with_units_the_features_and_a_14x14_patch_grid(vit):
    model, layers = vit
    raw = module_shapes(model, 224)
    for name, layer in layers.items():
        expected = "tokens" if name.startswith("encoder") else "channels_first"
        assert layer.layout == expected, name
        if expected == "tokens":
            tokens, features = raw[name]
            assert tokens == 197 and layer.raw_shape == [197, features]
            assert layer.output_shape == [features, 197] and layer.units == features
            assert (layer.token_grid, layer.prefix_tokens) == ([14, 14], 1)
            assert features == (3072 if re.search(r"\.mlp\.[012]$", name) else 768), name
        else:
            assert layer.output_shape == raw[name] and layer.raw_shape is None and layer.token_grid is None
    assert layers["conv_proj"].output_shape == [768, 14, 14] and layers["heads.head"].output_shape == [1000]
    noted = {name for name, layer in layers.items() if layer.note}
    assert noted == {f"encoder.layers.encoder_layer_{i}.mlp.1" for i in range(12)}
    assert "activation maximization" in layers[MLP_HIDDEN].note
    # What the API serves: the listing as recorded.
    info = ModelInfo.model_validate(
        {"id": "v", "name": "v", "kind": "image", "layers": [l.to_dict() for l in layers.values()]}
    )
    served = {layer.name: layer for layer in info.layers}
    assert served[MLP_HIDDEN].layout == "tokens" and served[MLP_HIDDEN].token_grid == [14, 14]
    assert served["conv_proj"].layout == "channels_first" and served["conv_proj"].note is None


def test_convnext_block_layers_between_its_permutes_are_channels_last_and_efficientnet_is_channels_first(
    convnext, efficientnet
):
    model, layers = convnext
    raw = module_shapes(model, 64)
    for name, layer in layers.items():
        inside = re.fullmatch(r"features\.\d\.\d+\.block\.[1-5]", name) is not None  # Permute .. Linear
        assert layer.layout == ("channels_last" if inside else "channels_first"), name
        if inside:
            h, w, c = raw[name]
            assert layer.output_shape == [c, h, w] and layer.units == c and layer.raw_shape == [h, w, c]
        else:
            assert layer.output_shape == raw[name], name
    assert layers["features.1.0.block.4"].output_shape == [384, 16, 16]  # 4 x 96 channels, 64 / 4 px
    assert layers["features.0.1"].type == "LayerNorm2d" and layers["features.0.1"].layout == "channels_first"
    assert {name for name, layer in layers.items() if layer.note} == {
        name for name in layers if re.fullmatch(r"features\.\d\.\d+\.block\.4", name)
    }
    model, layers = efficientnet
    raw = module_shapes(model, 64)
    assert all(layer.layout == "channels_first" and layer.note is None for layer in layers.values())
    assert all(layer.output_shape == raw[name] for name, layer in layers.items() if name in raw)


def test_capture_is_a_literal_permute_of_the_module_output_and_gradients_flow(vit, convnext):
    torch.manual_seed(0)
    for (model, _), size, layer, order in (
        (vit, 224, MLP_HIDDEN, (0, 2, 1)),
        (convnext, 64, "features.3.1.block.4", (0, 3, 1, 2)),
    ):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            raw = plain_outputs(model, x, {layer})[layer]
            captured = capture_activation(model, x, layer)
        torch.testing.assert_close(captured, raw.permute(*order), rtol=0, atol=0)
        # d(sum(weights * captured))/dx equals d(sum(weights permuted back * module output))/dx.
        weights = torch.randn(captured.shape)
        inverse = tuple(order.index(d) for d in range(len(order)))
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        (ours,) = torch.autograd.grad((capture_activation(model, x1, layer) * weights).sum(), x1)
        (theirs,) = torch.autograd.grad(
            (plain_outputs(model, x2, {layer})[layer] * weights.permute(*inverse)).sum(), x2
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    model, _ = vit
    x = torch.randn(1, 3, 224, 224)
    names = ["conv_proj", "encoder.layers.encoder_layer_0.ln_1", MLP_HIDDEN]
    with torch.no_grad():
        together = capture_activations(model, x, names)
        raw = plain_outputs(model, x, set(names))
    torch.testing.assert_close(together["conv_proj"], raw["conv_proj"], rtol=0, atol=0)  # channels first already
    for name in names[1:]:
        torch.testing.assert_close(together[name], raw[name].transpose(1, 2), rtol=0, atol=0)


def test_objectives_on_a_vit_layer_are_the_hand_computed_values_of_the_feature_column(vit):
    model, _ = vit
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        raw = plain_outputs(model, x, {MLP_HIDDEN})[MLP_HIDDEN]  # [2, 197, 3072]
        act = capture_activation(model, x, MLP_HIDDEN)
    channel = make_objective("channel", MLP_HIDDEN, [5, 3000])
    expected = torch.stack([raw[0, :, 5].mean(), raw[1, :, 3000].mean()])  # the mean over the tokens
    torch.testing.assert_close(channel.value(act), expected, rtol=1e-5, atol=1e-6)
    neuron = make_objective("neuron", MLP_HIDDEN, [7, 7], position=[20])
    torch.testing.assert_close(neuron.value(act), raw[:, 20, 7], rtol=0, atol=0)


def test_activation_maximization_raises_vit_mlp_hidden_units(vit):
    """A channel (the mean over the tokens) and a neuron ([token]) objective, two units each."""
    model, _ = vit
    contract = {
        "image": {"size": [224, 224], "channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    }
    for objective in (
        make_objective("channel", MLP_HIDDEN, [11, 12]),
        make_objective("neuron", MLP_HIDDEN, [11, 12], position=[100]),
    ):
        generator = torch.Generator().manual_seed(0)
        result = render(
            model, objective, make_param("fft", 2, 64, generator=generator), to_input=ModelInput(contract, "cpu"),
            transforms=make_transforms([]), generator=generator, steps=8,
        )  # fmt: skip
        assert (result.history[-1] > result.history[0] + 0.2).all(), result.history.T.tolist()
        images = ModelInput(contract, "cpu")(result.images)
        with torch.no_grad():
            final = objective.value(capture_activation(model, images, MLP_HIDDEN))
        assert (final > result.history[0]).all()


def test_a_token_stands_for_its_16x16_patch_and_the_class_token_for_the_whole_image(vit):
    assert token_grid(197, 224, 224) == (1, [14, 14])
    assert token_grid(196, 224, 224) == (0, [14, 14])
    assert token_grid(1 + 7 * 14, 112, 224) == (1, [7, 14])  # patches in the image's proportions
    assert token_grid(7, 32, 32) is None and token_box(3, 7, 32, 32) is None

    def patch(token: int) -> tuple[int, int, int, int]:  # vit_b_16: 16 px patches, row by row after the class token
        row, column = divmod(token - 1, 14)
        return (16 * row, 16 * column, 16 * row + 16, 16 * column + 16)

    assert token_box(0, 197, 224, 224) == (0, 0, 224, 224)
    assert [token_box(t, 197, 224, 224) for t in (1, 14, 15, 196)] == [patch(t) for t in (1, 14, 15, 196)]
    assert patch(196) == (208, 208, 224, 224)
    model, _ = vit
    example = torch.zeros(1, 3, 224, 224)
    boxes = receptive_fields(model, example, MLP_HIDDEN, [(0,), (1,), (15,), (196,)])
    assert boxes == {(0,): (0, 0, 224, 224), (1,): patch(1), (15,): patch(15), (196,): patch(196)}
    # Independently: before any attention (the embedded tokens), token t is computed from its patch only.
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    for token in (1, 15, 100):
        embedded = capture_activation(model, x, "encoder.dropout")  # [1, 768, 197]
        (gradient,) = torch.autograd.grad(embedded[0, :, token].sum(), x)
        support = gradient.abs().sum(dim=(0, 1)) > 0
        ys, xs = torch.nonzero(support.any(dim=1)).flatten(), torch.nonzero(support.any(dim=0)).flatten()
        assert (int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1) == patch(token)


def test_relu_rules_refuse_non_relu_networks_and_saliency_is_the_plain_gradient(vit, convnext, efficientnet):
    torch.manual_seed(2)
    for (model, _), size, layer in (
        (vit, 224, MLP_HIDDEN),
        (convnext, 64, "features.1.0.block.5"),
        (efficientnet, 64, "features.1.0.block.0.2"),
    ):
        x = torch.randn(1, 3, size, size)
        position = (40,) if model is vit[0] else (3, 4)
        neuron = Neuron(0, 2, position, 1.0)
        for method in ("deconvnet", "guided_backprop"):
            with pytest.raises(NonReLUNonlinearity) as caught:
                project(model, x, layer, [neuron], method)
            assert caught.value.nonlinearity in ("attention (softmax)", "gelu", "silu")
        projection = project(model, x, layer, [neuron], "saliency")
        seeded = x.clone().requires_grad_(True)
        value = capture_activation(model, seeded, layer)[(0, 2, *position)]
        (expected,) = torch.autograd.grad(value, seeded)
        torch.testing.assert_close(projection, expected * value.detach(), rtol=1e-4, atol=1e-7)


def _png() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _record(name: str, listed) -> dict:
    return {"id": f"torchvision/{name}", "kind": "image", "layers": [layer.to_dict() for layer in listed[1].values()]}


def _refusal(call) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call()
    return caught.value


def test_submit_checks_refuse_relu_only_methods_name_saliency_and_take_token_positions(vit, convnext, efficientnet):
    image = _png()
    vit_record, convnext_record = _record("vit_b_16", vit), _record("convnext_tiny", convnext)
    efficientnet_record = _record("efficientnet_b0", efficientnet)

    def deconvnet(record, layer, method, **extra):
        return check_deconvnet(DeconvnetParams(layer=layer, images=[image], method=method, **extra), record)

    for record, layer, named in (
        (vit_record, MLP_HIDDEN, ["MultiheadAttention (softmax)", "GELU"]),
        (convnext_record, "features.1.0.block.4", ["GELU"]),
        (efficientnet_record, "features.1.0.block.0.2", ["SiLU"]),
    ):
        for method in ("deconvnet", "guided_backprop"):
            problem = _refusal(lambda: deconvnet(record, layer, method))  # noqa: B023
            assert problem.errors[0]["loc"] == ["body", "params", "method"] and problem.slug == "method-not-applicable"
            assert "Methods that apply: saliency" in problem.detail and all(n in problem.detail for n in named)
        deconvnet(record, layer, "saliency")
        atlas = AtlasParams(layer=layer, dataset="d", method="deconvnet", feature_visualization=None)
        if len(next(e for e in record["layers"] if e["name"] == layer)["output_shape"]) == 3:
            assert _refusal(lambda: check_atlas(atlas, record)).errors[0]["loc"] == ["body", "params", "method"]  # noqa: B023
    # Before the first nonlinearity deconvnet is still defined (a convolution, a normalization).
    deconvnet(efficientnet_record, "features.0.1", "deconvnet")
    deconvnet(convnext_record, "features.1.0.block.3", "deconvnet")  # conv, LayerNorms, Linear: no GELU yet
    deconvnet(vit_record, "conv_proj", "guided_backprop")

    # Positions: [token] on a tokens layer, [y, x] on a map; anything else is a 422 saying which.
    layers = {entry["name"]: entry for entry in vit_record["layers"]}
    check_position(layers[MLP_HIDDEN], [196], ["p"])
    wrong = _refusal(lambda: check_position(layers[MLP_HIDDEN], [3, 4], ["p"]))
    assert "[token], 0 to 196" in wrong.detail and "class token" in wrong.detail
    assert "outside the 197 tokens" in _refusal(lambda: check_position(layers[MLP_HIDDEN], [197], ["p"])).detail
    check_position(layers["conv_proj"], [13, 13], ["p"])
    assert "[y, x]" in _refusal(lambda: check_position(layers["conv_proj"], [3], ["p"])).detail
    deconvnet(vit_record, MLP_HIDDEN, "saliency", channels=[3071], position=[0])
    map_layer = {e["name"]: e for e in convnext_record["layers"]}["features.1.0.block.4"]
    assert "16x16" in _refusal(lambda: check_position(map_layer, [16, 0], ["p"])).detail
