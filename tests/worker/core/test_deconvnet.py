"""Deconvnet projections against a literal Zeiler & Fergus deconvnet written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from worker.core.deconvnet import Neuron, channel_maxima, project, receptive_fields, strongest_channels, top_neurons
from worker.core.probe import inspect_layers
from worker.models.shapes import load_shapes_cnn


def literal_projection(layers: list[nn.Module], x: torch.Tensor, channel: int, position, value: float, guided=False):
    """Z&F by hand, for one image: forward recording max-pool switches, then down again —
    unpool through the switches (summing where pool windows overlap), rectify at each ReLU
    (and, for guided backprop, mask by where the forward input was positive), and convolve
    with the transposed filters."""
    activations, switches, relu_inputs = [x], {}, {}
    a = x
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            out, indices = F.max_pool2d(
                a, layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode, return_indices=True
            )
            switches[i] = indices
        elif isinstance(layer, nn.ReLU):
            relu_inputs[i] = a
            out = F.relu(a)
        elif isinstance(layer, nn.Conv2d):
            out = F.conv2d(a, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        else:
            raise TypeError(type(layer))
        activations.append(out)
        a = out
    signal = torch.zeros_like(a)
    signal[(0, channel, *position)] = value
    for i in reversed(range(len(layers))):
        layer, below = layers[i], activations[i]
        if isinstance(layer, nn.ReLU):
            signal = F.relu(signal)
            if guided:
                signal = signal * (relu_inputs[i] > 0)
        elif isinstance(layer, nn.MaxPool2d):
            unpooled = torch.zeros(below.shape[0], below.shape[1], below.shape[2] * below.shape[3])
            unpooled.scatter_add_(2, switches[i].flatten(2), signal.flatten(2))
            signal = unpooled.view_as(below)
        else:
            stride, padding, dilation = layer.stride, layer.padding, layer.dilation
            kernel = layer.weight.shape[2:]
            size = [
                (signal.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1
                for d in range(2)
            ]
            output_padding = [below.shape[2 + d] - size[d] for d in range(2)]
            signal = F.conv_transpose2d(
                signal, layer.weight, None, stride, padding, output_padding, layer.groups, dilation
            )
    return signal[0]


def pick(model, x, layer, channels, top_k):
    values, positions = channel_maxima(model, [x[:2], x[2:]], layer)
    return top_neurons(values, positions, strongest_channels(values, channels), top_k)


def _check_against_literal(model, features, x, layer_index, method="deconvnet", channels=2, top_k=2):
    layer = f"features.{layer_index}"
    neurons = pick(model, x, layer, channels, top_k)
    ours = project(model, x, layer, neurons, method=method, batch_size=3)
    with torch.no_grad():
        for row, neuron in enumerate(neurons):
            expected = literal_projection(
                list(features[: layer_index + 1]),
                x[neuron.image_index : neuron.image_index + 1],
                neuron.channel,
                neuron.position,
                neuron.activation,
                guided=method == "guided_backprop",
            )
            scale = expected.abs().max()
            assert scale > 0
            torch.testing.assert_close(ours[row], expected, rtol=1e-4, atol=1e-5 * float(scale))


@pytest.mark.parametrize("layer_index", [1, 5, 6, 11, 12])
def test_shapes_cnn_projections_equal_the_literal_deconvnet(layer_index):
    model = load_shapes_cnn()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    _check_against_literal(model, model.features, x, layer_index)


@pytest.mark.parametrize(("arch", "layer_index"), [("vgg11", 4), ("vgg11", 10), ("alexnet", 4), ("alexnet", 9)])
def test_torchvision_projections_equal_the_literal_deconvnet(arch, layer_index):
    torch.manual_seed(1)
    model = torchvision.models.get_model(arch, weights=None).eval()
    x = torch.randn(2, 3, 96, 96)
    _check_against_literal(model, model.features, x, layer_index, channels=2, top_k=1)


def test_guided_backprop_equals_the_literal_guided_projection():
    model = load_shapes_cnn()
    torch.manual_seed(2)
    x = torch.randn(3, 3, 64, 64)
    _check_against_literal(model, model.features, x, 9, method="guided_backprop")


def test_saliency_is_the_plain_gradient_of_the_activation():
    model = load_shapes_cnn()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    activation = model.features[:7](x)[0, 3, 10, 12]
    (expected,) = torch.autograd.grad(activation, x)
    neuron = Neuron(0, 3, (10, 12), float(activation.detach()))
    ours = project(model, x.detach(), "features.6", [neuron], method="saliency")[0]
    torch.testing.assert_close(ours, expected[0] * float(activation.detach()), rtol=1e-4, atol=1e-6)


def test_neurons_projected_together_do_not_leak_into_each_other():
    model = load_shapes_cnn()
    torch.manual_seed(3)
    x = torch.randn(3, 3, 64, 64)
    neurons = pick(model, x, "features.9", 3, 3)
    together = project(model, x, "features.9", neurons, batch_size=len(neurons))
    for row, neuron in enumerate(neurons):
        alone = project(model, x, "features.9", [neuron], batch_size=1)[0]
        torch.testing.assert_close(together[row], alone, rtol=1e-5, atol=1e-6)


def test_any_model_relus_functional_in_place_reused_with_batchnorm_and_residuals_leaves_it_untouched():
    torch.manual_seed(4)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for layer in ("layer1.0.relu@1", "layer2.1", "layer3.0.relu"):
        neurons = pick(model, x, layer, 2, 1)
        for method in ("deconvnet", "guided_backprop", "saliency"):
            result = project(model, x, layer, neurons, method=method)
            assert result.shape == (len(neurons), 3, 64, 64) and torch.isfinite(result).all()
            assert result.abs().sum() > 0
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks


def test_deconvnet_rectifies_the_signal_where_saliency_does_not():
    """Through a ReLU whose forward input is negative, the deconvnet still passes a positive
    signal (it ignores the forward mask); guided backprop and saliency block it."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Conv2d(2, 1, 1, bias=False)
            self.mix.weight.data.fill_(1.0)

        def forward(self, x):
            return self.mix(F.relu(x * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)))

    model = Tiny()
    x = torch.ones(1, 2, 1, 1)
    neuron = Neuron(0, 0, (0, 0), 1.0)  # mix = relu(1) + relu(-1) = 1
    assert project(model, x, "mix", [neuron], method="deconvnet").flatten().tolist() == [1.0, -1.0]
    assert project(model, x, "mix", [neuron], method="guided_backprop").flatten().tolist() == [1.0, 0.0]
    assert project(model, x, "mix", [neuron], method="saliency").flatten().tolist() == [1.0, 0.0]


def test_receptive_fields_match_the_arithmetic_of_a_plain_conv_stack():
    model = load_shapes_cnn()
    x = torch.zeros(1, 3, 64, 64)
    # features.6: conv3 (rf 3) -> pool2 (rf 4, stride 2) -> conv3 (rf 8) -> conv3 (rf 12); stride 2, pad 1 each.
    boxes = receptive_fields(model, x, "features.6", [(10, 10), (0, 0), (31, 31)])
    assert boxes[(10, 10)] == (15, 15, 27, 27)
    assert boxes[(0, 0)] == (0, 0, 7, 7)
    assert boxes[(31, 31)] == (57, 57, 64, 64)
    assert receptive_fields(model, x, "classifier.2", [()]) == {(): (0, 0, 64, 64)}


def test_the_forward_pass_stops_at_the_layer():
    model = load_shapes_cnn()

    def fail(*_):
        raise AssertionError("the classifier ran")

    handle = model.classifier.register_forward_pre_hook(fail)
    try:
        x = torch.randn(2, 3, 64, 64)
        values, positions = channel_maxima(model, [x], "features.3")
        project(model, x, "features.3", top_neurons(values, positions, [0], 1))
    finally:
        handle.remove()
    assert [l.name for l in inspect_layers(model, torch.zeros(1, 3, 64, 64))][3] == "features.3"


def test_maxima_are_each_images_strongest_activation_and_its_position():
    model = load_shapes_cnn()
    torch.manual_seed(5)
    x = torch.randn(5, 3, 64, 64)
    values, positions = channel_maxima(model, [x[:3], x[3:]], "features.6")
    with torch.no_grad():
        maps = model.features[:7](x)
    assert torch.equal(values, maps.amax(dim=(2, 3)))
    for image in range(5):
        for channel in (0, 7, 31):
            y, x_ = positions[image, channel].tolist()
            assert maps[image, channel, y, x_] == values[image, channel]
    vector_values, vector_positions = channel_maxima(model, [x], "classifier.2")
    assert vector_values.shape == (5, 10) and vector_positions.shape == (5, 10, 0)
