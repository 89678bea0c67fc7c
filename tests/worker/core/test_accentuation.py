"""Feature accentuation and the transparency map in the render loop (worker/core/actmax), without
Redis: the seed is a fixed point without an objective, the automatic weight is the ratio of the
gradient norms, the closeness term holds the image near the seed, and the transparency map is
the accumulated |gradient| (zero where the objective cannot see)."""

from __future__ import annotations

import torch
from torch import nn

from tests.worker.core.test_actmax import CONTRACT, Tiny, gen
from worker.core.actmax import ModelInput, make_objective, make_param, make_transforms, render
from worker.core.actmax.accentuation import Closeness, start_from_seed


def seed_image(size: int = 24) -> torch.Tensor:
    """A smooth picture (photographs have little energy at the 2-px checkerboard)."""
    g = torch.Generator().manual_seed(7)
    coarse = torch.rand(1, 3, size // 4, size // 4, generator=g) * 0.8 + 0.1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def accentuate(kind: str, closeness: Closeness, steps: int = 12, transforms=(), **kw):
    objective = make_objective("channel", "conv2", [0, 1])
    param = make_param(kind, objective.n, 24, generator=gen())
    start_from_seed(param, closeness.seed)
    start = param().detach()
    closeness.seed = start[:1]  # the start exactly (the fft basis drops the Nyquist checkerboard)
    result = render(
        Tiny(), objective, param, to_input=ModelInput(CONTRACT, "cpu"), transforms=make_transforms(list(transforms)),
        generator=gen(), steps=steps, closeness=closeness, **kw,
    )  # fmt: skip
    return start, result


def test_with_objective_weight_0_the_seed_is_returned():
    seed = seed_image()
    start, result = accentuate("pixel", Closeness("relu1", seed, objective_weight=0.0), steps=10)
    assert torch.allclose(start[0], seed[0], atol=1e-5)  # the pixel basis starts exactly at the seed
    assert torch.allclose(result.images, seed.expand(2, -1, -1, -1), atol=1e-5)
    start, result = accentuate(
        "fft", Closeness("relu1", seed, objective_weight=0.0), transforms=[{"type": "jitter", "pixels": 2}]
    )
    assert torch.equal(result.images, start)
    assert (start[0] - seed[0]).abs().mean() < 0.02  # the seed without its 2-px checkerboard


def test_the_automatic_weight_is_the_ratio_of_the_gradient_norms():
    closeness = Closeness("relu1", seed_image())
    closeness.calibrate(torch.full((2, 3, 4, 4), 2.0), torch.full((2, 3, 4, 4), 0.5))
    assert torch.allclose(closeness.weights, torch.tensor([4.0, 4.0]))
    closeness.calibrate(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4))
    assert closeness.weights.tolist() == [1.0]  # a silent unit: no ratio to take


def test_accentuation_raises_the_unit_and_stays_nearer_the_seed_than_without_the_term():
    seed = seed_image()
    _, held = accentuate("fft", Closeness("conv2", seed), steps=24)
    _, free = accentuate("fft", Closeness("conv2", seed, weight=0.0), steps=24)
    assert held.history[-1].gt(held.history[0]).all()  # the unit rises
    assert (held.closeness < free.closeness).all()  # ... while the layer's activations stay closer
    auto = Closeness("conv2", seed)
    accentuate("fft", auto, steps=3)
    assert auto.weights is not None and (auto.weights > 0).all() and auto.describe()["weight_automatic"]


class QuadrantMean(nn.Module):
    """The mean of the top-left 8x8 quadrant of each channel: blind to the rest of the image."""

    def forward(self, x):
        return x[:, :, :8, :8].mean((2, 3))


def test_the_transparency_map_is_zero_where_the_objective_cannot_see():
    objective = make_objective("neuron", "0", [0, 1])
    param = make_param("pixel", 2, 16, generator=gen(), decorrelate=False)
    contract = {"image": {"size": [16, 16], "channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    model = nn.Sequential(QuadrantMean())
    result = render(
        model, objective, param, to_input=ModelInput(contract, "cpu"), transforms=make_transforms([]),
        generator=gen(), steps=5, transparency=True,
    )  # fmt: skip
    alpha = result.transparency
    assert alpha.shape == (2, 16, 16)
    assert alpha[:, :8, :8].gt(0).all() and alpha[:, 8:, :].eq(0).all() and alpha[:, :, 8:].eq(0).all()
    assert torch.allclose(alpha.flatten(1).amax(1), torch.ones(2))
