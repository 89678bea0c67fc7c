"""The trust checks' core (worker/core/trust): Spearman against scipy, SSIM against a literal
loop over Wang et al.'s windows, path similarity against hand computation on a tiny net and on
the built-in shapes model, and the randomization check on the built-in model's committed
weights (randomizing them changes its saliency maps; leaving them changes nothing)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from worker.core.deconvnet import Neuron, channel_maxima, project
from worker.core.probe import inspect_layers, set_layer_layouts
from worker.core.trust import (
    FLAG_THRESHOLD,
    comparison_layers,
    control_neurons,
    layer_vectors,
    modules_below,
    parameterized_modules,
    path_similarity,
    pearson_matrix,
    projection_similarity,
    randomization_check,
    randomized_copy,
    spearman_matrix,
    spearman_pairs,
    ssim,
)
from worker.core.trust.path_similarity import evenly_spaced, same_images
from worker.core.trust.randomization import chance_corrected, support_box
from worker.core.trust.ssim import normalize_maps
from worker.models.shapes import SHAPES_VAL_SEED, generate_shapes, load_shapes_cnn, preprocess


@pytest.fixture(scope="module")
def shapes():
    model = load_shapes_cnn()
    images, labels = generate_shapes(40, SHAPES_VAL_SEED)
    return model, preprocess(images), labels


# --------------------------------------------------------------------------------------------
# correlation


def test_spearman_equals_scipy_with_ties():
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (5, 17), generator=generator).double()  # many ties
    b = torch.cat([torch.randn(3, 17, generator=generator, dtype=torch.float64), a[:2] * -2 + 1])
    ours = spearman_matrix(a, b)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            expected = scipy.stats.spearmanr(a[i].numpy(), b[j].numpy()).statistic
            assert ours[i, j].item() == pytest.approx(expected, abs=1e-12)
    assert ours[0, 3].item() == pytest.approx(-1.0, abs=1e-12)  # a[0] against -2 a[0] + 1


def test_spearman_pairs_over_kept_entries_equals_scipy_on_those_entries():
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (4, 30), generator=generator).double()
    b = torch.randn(4, 30, generator=generator, dtype=torch.float64)
    where = torch.rand(4, 30, generator=generator) > 0.4
    ours = spearman_pairs(a, b, where=where)
    for i in range(4):
        keep = where[i].numpy()
        expected = scipy.stats.spearmanr(a[i].numpy()[keep], b[i].numpy()[keep]).statistic
        assert ours[i].item() == pytest.approx(expected, abs=1e-12)
    whole = spearman_pairs(a, b)
    for i in range(4):
        assert whole[i].item() == pytest.approx(scipy.stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_pearson_equals_numpy_and_a_constant_row_correlates_zero():
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    b = torch.randn(2, 9, generator=generator, dtype=torch.float64)
    ours = pearson_matrix(a, b)
    for i in range(3):
        for j in range(2):
            assert ours[i, j].item() == pytest.approx(np.corrcoef(a[i], b[j])[0, 1], abs=1e-12)
    constant = torch.full((1, 9), 0.1, dtype=torch.float64)  # 0.1 has no exact binary mean
    assert spearman_matrix(constant, a).abs().max().item() == 0.0
    assert pearson_matrix(constant, a).abs().max().item() == 0.0


# --------------------------------------------------------------------------------------------
# SSIM


def literal_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. (2004) written out: for every 11x11 window inside the image, the Gaussian-
    weighted (sigma 1.5, weights summing to 1) means, variances and covariance, the SSIM
    formula, and the mean over the windows."""
    radius = 5
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for top in range(x.shape[0] - 2 * radius):
        for left in range(x.shape[1] - 2 * radius):
            px = x[top : top + 11, left : left + 11]
            py = y[top : top + 11, left : left + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_equals_a_literal_loop_over_windows():
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(3, 19, 23, generator=generator, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(3, 19, 23, generator=generator, dtype=torch.float64)).clamp(0, 1)
    b[2] = torch.rand(19, 23, generator=generator, dtype=torch.float64)
    ours = ssim(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(literal_ssim(a[i].numpy(), b[i].numpy()), abs=1e-10)


def test_ssim_in_boxes_equals_ssim_of_the_cropped_maps():
    generator = torch.Generator().manual_seed(4)
    a = torch.rand(2, 30, 28, generator=generator, dtype=torch.float64)
    b = torch.rand(2, 30, 28, generator=generator, dtype=torch.float64)
    boxes = [(3, 17, 5, 20), (0, 30, 10, 21)]
    ours = ssim(a, b, boxes=boxes)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        expected = literal_ssim(a[i, y0:y1, x0:x1].numpy(), b[i, y0:y1, x0:x1].numpy())
        assert ours[i].item() == pytest.approx(expected, abs=1e-10)


def test_ssim_of_a_map_with_itself_is_one():
    generator = torch.Generator().manual_seed(5)
    maps = normalize_maps(torch.randn(2, 16, 16, generator=generator))
    assert maps.min().item() == 0.0 and maps.max().item() == 1.0
    assert ssim(maps, maps).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_support_box_holds_both_supports_and_grows_to_the_window():
    a = torch.zeros(40, 40)
    b = torch.zeros(40, 40)
    a[10, 12] = 1.0
    b[14, 30] = -2.0
    assert support_box(a, b) == (7, 18, 12, 31)  # rows 10..14 grown evenly to 11; columns 12..30 as they are
    a[:] = 0
    a[0, 39] = 1.0
    b[:] = 0
    assert support_box(a, b) == (0, 11, 29, 40)  # grown inside the map at its corner
    assert support_box(torch.zeros(20, 20), torch.zeros(20, 20)) == (0, 20, 0, 20)


# --------------------------------------------------------------------------------------------
# path similarity: a tiny net computed by hand


def tiny_net() -> nn.Module:
    """A 1x1 convolution 3 -> 4 channels (channel k copies colour k, channel 3 is 0), biases
    4, 3, 2, 1, then a ReLU: on a constant colour c the conv's channel means are
    (c0 + 4, c1 + 3, c2 + 2, 1). Integers throughout, so that float32 keeps the ties exact."""
    conv = nn.Conv2d(3, 4, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        for k in range(3):
            conv.weight[k, k] = 1.0
        conv.bias.copy_(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    return nn.Sequential(conv, nn.ReLU()).eval()


def constant(*colour: float) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 5, 5).clone()


def test_path_similarity_of_a_grey_image_on_a_hand_built_net():
    model = tiny_net()
    grey = constant(0, 0, 0)  # conv (4, 3, 2, 1), ReLU the same
    a = constant(-6, -4, 3)  # conv (-2, -1, 5, 1), ReLU (0, 0, 5, 1)
    b = constant(0, -5, -4)  # conv (4, -2, -2, 1), ReLU (4, 0, 0, 1)
    c = constant(1, 2, 3)  # conv = ReLU = (5, 5, 5, 1)
    d = constant(-1, 1, 0)  # conv = ReLU = (3, 4, 2, 1)
    vectors = {
        "0": {"grey": [4, 3, 2, 1], "a": [-2, -1, 5, 1], "b": [4, -2, -2, 1]},
        "1": {"grey": [4, 3, 2, 1], "a": [0, 0, 5, 1], "b": [4, 0, 0, 1]},
    }
    for layer in vectors:
        vectors[layer]["c"] = [5, 5, 5, 1]
        vectors[layer]["d"] = [3, 4, 2, 1]

    def rho(layer: str, x: str, y: str) -> float:
        return scipy.stats.spearmanr(vectors[layer][x], vectors[layer][y]).statistic

    # by hand: ranks (4,3,2,1) vs (1,2,4,3): 1 - 6*18/(4*15); vs (4,1.5,1.5,3): 1.5/sqrt(5*4.5)
    assert rho("0", "grey", "a") == pytest.approx(-0.8)
    assert rho("0", "grey", "b") == pytest.approx(1 / math.sqrt(10))
    assert rho("1", "grey", "a") == pytest.approx(-7 / (3 * math.sqrt(10)))  # the ReLU ties a's two zeros

    result = path_similarity(
        model, ["0", "1"], torch.cat([grey, d]), torch.cat([a, b]), torch.cat([a, c]), batch_size=3
    )
    assert result.layers == ["0", "1"]
    for v, name in enumerate(["grey", "d"]):
        for l, layer in enumerate(["0", "1"]):
            expected = (rho(layer, name, "a") + rho(layer, name, "b")) / 2
            assert result.similarity[v][l] == pytest.approx(expected, abs=1e-12)
    # random image a is exemplar a: compared with b only; c with both
    for l, layer in enumerate(["0", "1"]):
        expected = (rho(layer, "a", "b") + (rho(layer, "c", "a") + rho(layer, "c", "b")) / 2) / 2
        assert result.random_similarity[l] == pytest.approx(expected, abs=1e-12)
    assert result.random_images == 2
    grey_overall = ((-0.8 + 1 / math.sqrt(10)) / 2 + (-7 / (3 * math.sqrt(10)) + 1 / math.sqrt(10)) / 2) / 2
    assert result.path_similarity[0] == pytest.approx(grey_overall, abs=1e-12)
    assert result.random_baseline == pytest.approx(sum(result.random_similarity) / 2, abs=1e-15)
    # grey (-0.23) is above the baseline (-0.39); d, ranked against both exemplars, is below
    assert result.flagged == [False, True]
    assert result.path_similarity[1] < result.random_baseline < result.path_similarity[0]
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["definition"].startswith("Path similarity")
    assert [v["flagged"] for v in data["visualizations"]] == [False, True]
    assert data["random_images"] == 2 and data["exemplars"] == 2
    # the random images' vectors computed once, as a job with several units shares them
    shared = layer_vectors(model, torch.cat([a, c]), ["0", "1"])
    again = path_similarity(
        model, ["0", "1"], torch.cat([grey, d]), torch.cat([a, b]), torch.cat([a, c]), batch_size=3,
        random_vectors=shared,
    )  # fmt: skip
    for mine, theirs in zip(again.similarity, result.similarity, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-12)
    assert again.random_similarity == pytest.approx(result.random_similarity, abs=1e-12)
    assert (again.flagged, again.random_images) == (result.flagged, result.random_images)


def test_a_random_image_that_is_the_only_exemplar_leaves_no_baseline():
    model = tiny_net()
    a = constant(-0.6, -0.4, 0.3)
    with pytest.raises(ValueError, match="no random image"):
        path_similarity(model, ["0"], a, a, a)
    with pytest.raises(ValueError, match="no layer"):
        path_similarity(model, [], a, a, a)


def test_same_images_finds_pixel_identical_pairs_only():
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, 8, 8, generator=generator)
    y = torch.stack([x[2], x[0] + 1e-6, x[0]])
    assert same_images(x, y).tolist() == [
        [False, False, True],
        [False, False, False],
        [True, False, False],
        [False, False, False],
    ]


# --------------------------------------------------------------------------------------------
# path similarity on the built-in model


def test_an_exemplar_compared_with_itself_has_path_similarity_one(shapes):
    model, x, _ = shapes
    records = [layer.to_dict() for layer in inspect_layers(model, x[:1])]
    layers = comparison_layers(records, "features.10")
    result = path_similarity(model, layers, x[3:4], x[3:4], x[10:20])
    assert len(result.layers) == 8
    assert result.similarity[0] == pytest.approx([1.0] * 8, abs=1e-12)
    assert result.path_similarity[0] == pytest.approx(1.0, abs=1e-12)
    assert result.flagged == [False]
    vectors = layer_vectors(model, x[:6], layers)
    for layer in layers:
        assert torch.diagonal(spearman_matrix(vectors[layer], vectors[layer])).tolist() == pytest.approx(
            [1.0] * 6, abs=1e-12
        )


def test_a_visualization_equal_to_an_exemplar_is_not_flagged_and_costs_one_forward_per_batch(shapes):
    model, x, _ = shapes
    records = [layer.to_dict() for layer in inspect_layers(model, x[:1])]
    layers = comparison_layers(records, "features.10")
    values, _ = channel_maxima(model, [x], "features.10")
    forwards = []
    handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        for channel in (0, 5, 17):
            top = values[:, channel].topk(6).indices
            exemplars = x[top]
            random_images = x[torch.arange(0, 40, 3)]  # 14 images, some of them exemplars maybe
            result = path_similarity(model, layers, exemplars[:2], exemplars, random_images, batch_size=64)
            assert result.flagged == [False, False], channel
            assert min(result.path_similarity) > result.random_baseline
    finally:
        handle.remove()
    assert len(forwards) == 3  # 2 + 6 + 14 images: one forward pass each time


def test_comparison_layers_on_the_built_in_model(shapes):
    model, x, _ = shapes
    records = [layer.to_dict() for layer in inspect_layers(model, x[:1])]
    below = ["features.0", "features.1", "features.2", "features.3", "features.4", "features.5", "features.6"]
    below += ["features.7", "features.8", "features.9"]
    assert comparison_layers(records, "features.10", max_layers=100) == below
    # 10 candidates, 8 evenly spaced: positions round(i * 9 / 7)
    assert comparison_layers(records, "features.10") == [below[round(i * 9 / 7)] for i in range(8)]
    # after the features: `features` (a Sequential right after its last child) is skipped
    everything = comparison_layers(records, "classifier.2", max_layers=100)
    assert "features" not in everything and everything[-3:] == ["pool", "classifier.0", "classifier.1"]
    assert comparison_layers(records, "features.0") == []
    with pytest.raises(KeyError):
        comparison_layers(records, "nope")


def test_comparison_layers_skips_pass_throughs_containers_and_tiny_layers():
    records = [
        {"name": "stem.0", "type": "Conv2d", "output_shape": [8, 16, 16]},
        {"name": "stem.1", "type": "Dropout", "output_shape": [8, 16, 16]},
        {"name": "stem", "type": "Sequential", "output_shape": [8, 16, 16]},
        {"name": "block.fc", "type": "Linear", "output_shape": [32, 10]},  # 32 features at 10 tokens
        {"name": "block", "type": "EncoderBlock", "output_shape": [32, 10]},  # may add a residual: kept
        {"name": "gate.0", "type": "Linear", "output_shape": [2, 10]},  # 2 features: too few
        {"name": "gate", "type": "Linear", "output_shape": [2]},
        {"name": "head", "type": "Linear", "output_shape": [5]},
    ]
    assert comparison_layers(records, "head") == ["stem.0", "block.fc", "block"]
    assert evenly_spaced(list("abcdefghij"), 3) == ["a", "e", "j"]  # round(4.5) = 4 (to even)
    assert evenly_spaced(list("abc"), 1) == ["c"]


class _Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())

    def forward(self, x):
        return self.body(x)


def test_layers_with_the_same_output_are_counted_once():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Wrapper(), nn.Conv2d(6, 4, 1)).eval()
    x = torch.randn(5, 3, 9, 9)
    result = path_similarity(model, ["0", "1.body.1", "1"], x[:1], x[1:3], x[3:])
    assert result.layers == ["0", "1.body.1"]
    assert result.duplicates == {"1": "1.body.1"}
    assert result.to_dict()["duplicates"] == {"1": "1.body.1"}


class _Tokens(nn.Module):
    """Patches to 6-feature tokens, then a Linear over each token: [N, 4, 5] out, features last."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 6, kernel_size=4, stride=4)
        self.mlp = nn.Linear(6, 5)

    def forward(self, x):
        return self.mlp(self.embed(x).flatten(2).transpose(1, 2))


def test_a_tokens_layer_is_pooled_over_its_tokens():
    torch.manual_seed(8)
    model = _Tokens().eval()
    x = torch.randn(3, 3, 8, 8)
    records = inspect_layers(model, x[:1])
    set_layer_layouts(model, {layer.name: layer.layout for layer in records})
    assert [layer.to_dict()["output_shape"] for layer in records] == [[6, 2, 2], [5, 4]]
    vectors = layer_vectors(model, x, ["embed", "mlp"])
    with torch.no_grad():
        tokens = model(x)  # [N, tokens, features]
        torch.testing.assert_close(vectors["mlp"], tokens.mean(dim=1).double())
        torch.testing.assert_close(vectors["embed"], model.embed(x).mean(dim=(2, 3)).double())
    assert comparison_layers([layer.to_dict() for layer in records], "mlp") == ["embed"]


# --------------------------------------------------------------------------------------------
# randomized copies


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_randomized_copy_is_deterministic_and_leaves_the_model_untouched(shapes):
    model, _, _ = shapes
    before = _state(model)
    every = parameterized_modules(model)
    assert every == [
        "features.0",
        "features.3",
        "features.5",
        "features.8",
        "features.10",
        "classifier.0",
        "classifier.2",
    ]
    first = randomized_copy(model, every, seed=3)
    second = randomized_copy(model, every, seed=3)
    other = randomized_copy(model, every, seed=4)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
        assert torch.equal(first.state_dict()[name], second.state_dict()[name]), name
        assert not torch.equal(first.state_dict()[name], tensor), name
        assert not torch.equal(first.state_dict()[name], other.state_dict()[name]), name
    # as freshly built: PyTorch's default conv/linear init bounds |w| by 1 / sqrt(fan_in)
    conv = first.get_submodule("features.3")
    assert conv.weight.abs().max().item() <= 1 / math.sqrt(16 * 9)
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(16 * 9) / math.sqrt(3), rel=0.1)


def test_randomized_copy_touches_only_the_named_modules_and_their_draws_do_not_depend_on_the_others(shapes):
    model, _, _ = shapes
    one = randomized_copy(model, ["features.0"], seed=0)
    two = randomized_copy(model, ["features.0", "features.5"], seed=0)
    assert torch.equal(one.features[0].weight, two.features[0].weight)
    assert not torch.equal(one.features[0].weight, model.features[0].weight)
    assert torch.equal(one.features[5].weight, model.features[5].weight)
    assert not torch.equal(two.features[5].weight, model.features[5].weight)
    assert torch.equal(one.classifier[0].weight, model.classifier[0].weight)


class _Scaled(nn.Module):
    """A module with a parameter of its own and no reset method (like a layer scale)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8))
        self.fixed = nn.Parameter(torch.full((3,), 0.25))

    def forward(self, x):
        return x * self.scale.view(1, -1, 1, 1)


def test_batch_norm_statistics_are_reset_and_parameters_without_a_reset_are_redrawn():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), _Scaled()).eval()
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)
        model[1].running_var.fill_(3.0)
        model[1].num_batches_tracked.fill_(7)
        model[1].weight.fill_(2.0)
    twin = randomized_copy(model, parameterized_modules(model), seed=1)
    assert parameterized_modules(model) == ["0", "1", "2"]
    bn = twin[1]
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(bn.running_var, torch.ones(8))
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    assert float(model[1].running_mean[0]) == 5.0  # the original keeps its statistics
    scale = twin[2].scale
    assert not torch.equal(scale, model[2].scale)
    assert torch.equal(scale, randomized_copy(model, ["2"], seed=1)[2].scale)
    assert torch.equal(twin[2].fixed, model[2].fixed)  # a constant parameter has no spread to draw from


def test_modules_below_a_layer_are_the_weights_its_projection_passes_through(shapes):
    model, x, _ = shapes
    assert modules_below(model, x, "features.5") == ["features.0", "features.3", "features.5"]
    assert modules_below(model, x, "features.7") == ["features.0", "features.3", "features.5"]
    assert modules_below(model, x, "classifier.2") == parameterized_modules(model)


# --------------------------------------------------------------------------------------------
# the randomization check on the built-in model


def test_randomizing_all_weights_changes_the_saliency_of_class_logits(shapes):
    """Adebayo et al.'s setting: the gradient of a class logit, whose map covers the image."""
    model, x, labels = shapes
    neurons = [Neuron(i, int(labels[i]), (), 0.0) for i in range(6)]
    real = project(model, x, "classifier.2", neurons, "saliency")
    twin = randomized_copy(model, parameterized_modules(model), seed=0)
    randomized = project(twin, x, "classifier.2", neurons, "saliency")
    same = projection_similarity(real, randomized)
    assert same.flagged is None  # no control given
    assert same.rank_correlation < FLAG_THRESHOLD - 0.25
    assert max(same.randomized.rank_correlation) < FLAG_THRESHOLD
    unchanged = projection_similarity(
        real, project(randomized_copy(model, [], 0), x, "classifier.2", neurons, "saliency")
    )
    assert unchanged.randomized.rank_correlation == pytest.approx([1.0] * 6, abs=1e-12)
    assert unchanged.randomized.ssim == pytest.approx([1.0] * 6, abs=1e-12)


def _strongest(model, x, layer_index: int, count: int) -> list[Neuron]:
    neurons = []
    with torch.no_grad():
        for i in range(count):
            output = model.features[: layer_index + 1](x[i : i + 1])[0]
            channel = int(output.amax(dim=(1, 2)).argmax())
            y, x_ = divmod(int(output[channel].argmax()), output.shape[2])
            neurons.append(Neuron(i, channel, (y, x_), float(output[channel, y, x_])))
    return neurons


def test_the_check_on_an_inner_unit_corrects_for_its_receptive_field(shapes):
    """A unit of features.10 sees ~30x30 pixels; every map of it, trained weights or random,
    is brightest at the field's centre. The raw rank correlation after full randomization is
    high for that reason alone; the corrected one is near 0, and 1 with the weights kept."""
    model, x, _ = shapes
    neurons = _strongest(model, x, 10, 6)
    check = randomization_check(model, x, "features.10", neurons, "saliency", seed=0)
    assert check.randomized_modules == ["features.0", "features.3", "features.5", "features.8", "features.10"]
    similarity = check.similarity
    assert similarity.rank_correlation > FLAG_THRESHOLD  # the receptive field's profile
    assert similarity.corrected_rank_correlation < 0.25
    assert similarity.flagged is False
    kept = randomization_check(model, x, "features.10", neurons, "saliency", modules=[])
    assert kept.similarity.randomized.rank_correlation == pytest.approx([1.0] * 6, abs=1e-12)
    assert kept.similarity.corrected_rank_correlation == pytest.approx(1.0, abs=1e-12)
    assert kept.similarity.corrected_ssim == pytest.approx(1.0, abs=1e-12)
    assert kept.similarity.flagged is True
    data = json.loads(json.dumps(check.to_dict(), allow_nan=False))
    assert data["definition"].startswith("Randomization sanity check")
    assert data["flagged"] is False and len(data["maps"]) == 6
    assert data["method"] == "saliency" and data["seed"] == 0


def test_control_neurons_take_another_image_at_the_same_unit_and_position():
    neurons = [Neuron(0, 1, (2, 3), 1.0), Neuron(0, 4, (5, 6), 1.0), Neuron(2, 7, (8, 9), 1.0)]
    assert control_neurons(neurons) == [
        Neuron(2, 1, (2, 3), 1.0),
        Neuron(2, 4, (5, 6), 1.0),
        Neuron(0, 7, (8, 9), 1.0),
    ]
    assert control_neurons(neurons[:2]) is None


def test_chance_correction():
    assert chance_corrected(0.8, 0.8) == 0.0
    assert chance_corrected(1.0, 0.6) == 1.0
    assert chance_corrected(0.9, 0.6) == pytest.approx(0.75)
    assert chance_corrected(0.5, 1.0) is None
