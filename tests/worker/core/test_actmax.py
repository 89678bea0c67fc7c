"""Activation maximization's core (worker/core/actmax) without Redis: parameterizations,
transforms, objectives against hand computation, determinism, truncation, dead objectives, and
the parameters' contract. The quality bar on shapes-cnn runs through HTTP in test_actmax_jobs.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from service.kinds.activation_maximization import (
    MAX_SIZE,
    MAX_STEPS,
    ActivationMaximizationParams,
    standard_transforms,
)
from worker.core.actmax import (
    DeadObjective,
    Diversity,
    ModelInput,
    make_objective,
    make_param,
    make_regularizers,
    make_transforms,
    measure_images,
    render,
)
from worker.core.actmax.param import COLOR_CORRELATION_NORMALIZED, rfft2d_freqs
from worker.core.actmax.transforms import Compose, Jitter, Pad, Rotate, Scale
from worker.core.imaging import normalize


def standard(size: int) -> Compose:
    """Lucid's standard transforms as the job kind defines them, built by the core."""
    return make_transforms(standard_transforms(size))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# parameterizations


@pytest.mark.parametrize("kind", ["fft", "pixel"])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_params_give_rgb_images_in_0_1_that_start_near_grey_and_have_gradients(kind, decorrelate):
    param = make_param(kind, 3, 32, generator=gen(), decorrelate=decorrelate)
    image = param()
    assert image.shape == (3, 3, 32, 32)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert abs(image.mean().item() - 0.5) < 0.02  # sd 0.01: a faint start around grey
    image[:, 0].mean().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in param.parameters())


def test_the_fft_parameterization_is_1_over_f_scaled():
    param = make_param("fft", 16, 64, generator=gen(), decorrelate=False, sd=1.0)
    spectrum = torch.fft.rfft2(param.linear().detach()).abs().mean(dim=(0, 1))  # [64, 33]
    freqs = rfft2d_freqs(64, 64)
    low = spectrum[(freqs > 0.02) & (freqs < 0.04)].mean()
    high = spectrum[(freqs > 0.2) & (freqs < 0.4)].mean()
    # amplitude ~ 1/f: ten times the frequency, about a tenth of the amplitude
    assert 5 < (low / high).item() < 20


def test_colour_decorrelation_is_lucids_normalized_svd_sqrt():
    assert torch.allclose(COLOR_CORRELATION_NORMALIZED.norm(dim=0).max(), torch.tensor(1.0))
    param = make_param("pixel", 1, 4, generator=gen(), decorrelate=True, valid="clamp")
    with torch.no_grad():
        param.pixels.zero_()
        param.pixels[:, 0] = 0.1  # the first decorrelated component: about luminance
    rgb = param()[0, :, 0, 0] - 0.5
    expected = 0.1 * COLOR_CORRELATION_NORMALIZED[:, 0]
    assert torch.allclose(rgb, expected, atol=1e-6)


def test_fft_blur_set_and_upsampling_act_on_the_linear_image():
    param = make_param("fft", 2, 32, generator=gen(), sd=1.0)
    image = param.linear().detach().clone()
    param.set_linear_(image)
    assert torch.allclose(param.linear(), image, atol=1e-5)
    big = param.linear_at((64, 64)).detach()
    assert torch.allclose(big[..., ::2, ::2], image, atol=1e-5)  # exact band-limited interpolation
    before = torch.fft.rfft2(param.linear().detach()).abs()[..., 8:, 8:].sum()
    param.blur_(1.5)
    after = torch.fft.rfft2(param.linear().detach()).abs()[..., 8:, 8:].sum()
    assert after < 0.2 * before
    limited = make_param("fft", 1, 64, generator=gen(), sd=1.0, max_frequency=0.25)
    spectrum = torch.fft.rfft2(limited.linear().detach()).abs()[0, 0]
    assert spectrum[20:44].max() < 1e-4 and spectrum[:, 20:].max() < 1e-4  # nothing above 0.25 cycles/px


def test_model_input_handles_grayscale_and_non_imagenet_statistics():
    image = torch.full((2, 3, 16, 16), 0.75)
    gray = ModelInput({"image": {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.25]}}, "cpu")
    x = gray(image)
    assert x.shape == (2, 1, 8, 8) and torch.allclose(x, torch.ones_like(x), atol=1e-5)
    spec = {"size": [16, 16], "channels": 3, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 2.0]}
    colour = ModelInput({"image": spec}, "cpu")
    assert torch.allclose(colour(image), normalize(image, spec), atol=1e-6)
    plain = ModelInput({"image": {"size": [16, 16], "channels": 3}}, "cpu")
    assert torch.equal(plain(image), image)


# ---------------------------------------------------------------------------------------------
# transforms


def test_jitter_is_a_per_image_crop_read_from_the_random_numbers():
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    u = torch.tensor([[0.0, 0.99], [0.5, 0.1]])  # offsets: (0, 4) and (2, 0) for d = 4
    out = Jitter(4)(x, u)
    assert out.shape == (2, 3, 6, 6)
    assert torch.equal(out[0], x[0, :, 0:6, 4:10]) and torch.equal(out[1], x[1, :, 2:8, 0:6])


def test_pad_scale_and_rotate_properties():
    x = torch.rand(2, 3, 16, 16)
    padded = Pad(3)(x, torch.empty(2, 0))
    assert padded.shape == (2, 3, 22, 22) and torch.all(padded[..., :3, :] == 0.5)
    assert Pad(3, "reflect")(x, None).shape == (2, 3, 22, 22)
    identity = Compose([Scale(1.0, 1.0), Rotate(0.0)])
    assert identity.dims == 2
    assert torch.allclose(identity(x, torch.rand(2, 2)), x, atol=1e-5)
    # a 90 degree turn of a square image is exact
    quarter = Rotate(90.0)(x, torch.ones(2, 1))  # u = 1: +90 degrees
    assert torch.allclose(quarter, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-4) or torch.allclose(
        quarter, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-4
    )
    zoomed = Scale(2.0, 2.0)(x, torch.zeros(2, 1))
    assert zoomed.shape == x.shape and not torch.allclose(zoomed, x)


def test_standard_transforms_are_lucids_set_deterministic_for_the_random_numbers():
    transforms = standard(128)
    assert transforms.describe() == make_transforms(standard_transforms(128)).describe()
    assert [t["type"] for t in transforms.describe()] == ["pad", "jitter", "scale", "rotate", "jitter"]
    assert transforms.describe()[0]["pixels"] == 12 and standard(256).describe()[0]["pixels"] == 24
    x = torch.rand(4, 3, 32, 32)
    u = torch.rand(4, transforms.dims, generator=gen())
    a, b = transforms(x, u), transforms(x, u.clone())
    assert torch.equal(a, b) and a.shape == (4, 3, 32 + 24 - 12, 32 + 24 - 12)
    assert not torch.equal(transforms(x, torch.rand(4, transforms.dims, generator=gen(1))), a)


# ---------------------------------------------------------------------------------------------
# objectives


def test_objectives_match_hand_computation():
    torch.manual_seed(0)
    act = torch.randn(4, 5, 6, 7)
    rows = range(4)
    neuron = make_objective("neuron", "l", [1, 3], images_per_unit=2, position=[2, 5])
    assert neuron.image_units == [1, 1, 3, 3]
    assert torch.allclose(neuron.value(act), torch.stack([act[i, u, 2, 5] for i, u in zip(rows, [1, 1, 3, 3])]))
    channel = make_objective("channel", "l", [0, 4, 2, 2])
    assert torch.allclose(channel.value(act), torch.stack([act[i, u].mean() for i, u in zip(rows, [0, 4, 2, 2])]))
    assert channel.unit_ids == [0, 4, 2] and channel.groups() == [0, 1, 2, 2]
    assert torch.allclose(channel.per_unit(act), act.mean(dim=(2, 3))[:, [0, 4, 2]])
    layer = make_objective("layer", "l", None, images_per_unit=4)
    assert torch.allclose(layer.value(act), torch.stack([(act[i] ** 2).mean() for i in rows]))
    vector = [0.5, -1.0, 0.0, 2.0, 1.0]
    direction = make_objective("direction", "l", None, images_per_unit=4, vector=vector)
    v = torch.tensor(vector)
    expected = torch.stack([(act[i] * v[:, None, None]).sum(0).mean() for i in rows])
    assert torch.allclose(direction.value(act), expected, atol=1e-5)
    at = make_objective("direction", "l", None, images_per_unit=4, vector=vector, position=[1, 1])
    assert torch.allclose(at.value(act), act[:, :, 1, 1] @ v, atol=1e-5)
    logits = torch.randn(4, 10)
    cls = make_objective("class", "fc", [7, 2, 9, 0])
    assert torch.allclose(cls.value(logits), logits[[0, 1, 2, 3], [7, 2, 9, 0]])
    assert torch.equal(cls.scores(logits), logits)
    assert cls.bonus(logits, 0.0) is None  # no softmax term by default
    weighted = make_objective("class", "fc", [7, 2, 9, 0], softmax_weight=2.0, softmax_start=0.5)
    assert weighted.bonus(logits, 0.4) is None
    expected = 2.0 * torch.log_softmax(logits, 1)[[0, 1, 2, 3], [7, 2, 9, 0]]
    assert torch.allclose(weighted.bonus(logits, 0.5), expected)
    flat = make_objective("neuron", "fc", [3, 1])
    assert torch.allclose(flat.value(logits[:2]), logits[[0, 1], [3, 1]])


def test_diversity_penalizes_similar_images_of_the_same_unit_only():
    torch.manual_seed(0)
    a = torch.rand(1, 4, 5, 5)
    same = torch.cat([a, a, a * 2, torch.rand(1, 4, 5, 5)])
    diversity = Diversity(0.5, [0, 0, 1, 1])
    penalty = diversity.penalty(same)
    assert torch.allclose(penalty[:2], torch.tensor([0.25, 0.25]), atol=1e-5)  # 0.5 * cos 1 / 2 images
    assert penalty[2] < 0.25 and torch.allclose(penalty[2], penalty[3])
    assert not Diversity(1.0, [0, 1, 2, 3]).active and not Diversity(0.0, [0, 0]).active


# ---------------------------------------------------------------------------------------------
# the loop


class Tiny(nn.Module):
    """conv1 -> relu1 -> conv2 -> relu2 -> pool -> fc; counts the calls of each module."""

    def __init__(self, dead_bias: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, 4)
        if dead_bias:
            with torch.no_grad():
                self.conv1.bias[0] = dead_bias
                self.conv1.bias[1:] = 1.0  # the others always fire
        self.calls: dict[str, int] = {}
        for name, module in self.named_children():
            module.register_forward_hook(
                lambda m, i, o, name=name: self.calls.__setitem__(name, self.calls.get(name, 0) + 1)
            )
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


CONTRACT = {"image": {"size": [16, 16], "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def tiny_render(model, objective, seed=0, steps=6, **kw):
    g = gen(seed)
    param = make_param(kw.pop("kind", "fft"), objective.n, 24, generator=g)
    return render(
        model, objective, param, to_input=ModelInput(CONTRACT, "cpu"), transforms=standard(24),
        generator=g, steps=steps, **kw,
    )  # fmt: skip


def test_render_is_deterministic_for_a_seed_and_raises_the_objective():
    objective = make_objective("channel", "conv2", [0, 1, 2])
    first = tiny_render(Tiny(), objective, seed=3, steps=24, thresholds=[12])
    second = tiny_render(Tiny(), objective, seed=3, steps=24, thresholds=[12])
    other = tiny_render(Tiny(), objective, seed=4, steps=24)
    assert torch.equal(first.images, second.images) and torch.equal(first.history, second.history)
    assert not torch.equal(first.images, other.images)
    assert first.images.shape == (3, 3, 24, 24) and first.history.shape == (24, 3)
    assert set(first.snapshots) == {12} and first.snapshots[12].shape == (3, 3, 24, 24)
    assert (first.history[-4:].mean(0) > first.history[:4].mean(0)).all()


def test_a_conv1_objective_never_runs_the_later_layers():
    model = Tiny()
    calls = []

    def forbid(*_):
        calls.append(1)
        raise AssertionError("a layer after conv1 ran")

    handles = [getattr(model, name).register_forward_pre_hook(forbid) for name in ("relu1", "conv2", "relu2", "fc")]
    objective = make_objective("neuron", "conv1", [0, 5], position=[8, 8])
    result = tiny_render(model, objective, steps=5)
    for handle in handles:
        handle.remove()
    assert not calls and model.calls["conv1"] == 5 and result.images.shape[0] == 2


def test_every_regularizer_runs_and_keeps_images_valid():
    regularizers = make_regularizers(
        l2=0.05, blur_every=2, blur_sigma=0.7, clip_norm_percentile=10, clip_contribution_percentile=10, tv=0.1
    )
    assert len(regularizers) == 5
    for kind in ("fft", "pixel"):
        result = tiny_render(
            Tiny(), make_objective("channel", "conv2", [1]), steps=6, kind=kind, regularizers=regularizers
        )
        assert torch.isfinite(result.images).all() and 0 <= result.images.min() and result.images.max() <= 1


def test_a_dead_objective_is_reported():
    # conv1 channel 0 with a huge negative bias: its ReLU never fires, the gradient is exactly 0
    objective = make_objective("channel", "relu1", [0])
    with pytest.raises(DeadObjective):
        tiny_render(Tiny(dead_bias=-1e4), objective, steps=20)
    partly = tiny_render(Tiny(dead_bias=-1e4), make_objective("channel", "relu1", [0, 1]), steps=20)
    assert partly.dead == [True, False]


class LateGate(nn.Module):
    """conv -> gate -> relu. The gate holds channel 0 far below zero for its first `closed`
    calls, then lets it through (bias +1: it fires everywhere): a unit silent at first that
    fires later. Channel 1 always fires."""

    def __init__(self, closed: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.bias[:] = 1.0
        self.gate = Gate(closed)
        self.relu = nn.ReLU()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.relu(self.gate(self.conv(x)))


class Gate(nn.Module):
    def __init__(self, closed: int):
        super().__init__()
        self.closed, self.calls = closed, 0

    def forward(self, x):
        self.calls += 1
        if self.calls <= self.closed:
            x = x - torch.tensor([1e4, 0.0]).view(1, 2, 1, 1)
        return x


def test_a_unit_that_fires_after_the_first_steps_is_not_dead():
    # silent for 20 steps (past DEAD_CHECK_STEPS), firing from step 21 of 30
    result = tiny_render(LateGate(closed=20), make_objective("channel", "relu", [0, 1]), steps=30)
    assert result.history[:20, 0].abs().max() == 0 and result.history[20:, 0].min() > 0
    assert result.dead == [False, False]


def test_a_job_reports_dead_only_for_a_unit_that_never_activates():
    """Through the job's own code (no Redis): channel 0 is gated for every step of the
    optimization, then fires on the finished image (activation > 0): not dead. A unit that
    stays at 0 everywhere is dead."""
    from worker.core.probe import inspect_layers
    from worker.kinds.activation_maximization import execute

    def run(closed: int):
        model = LateGate(closed)
        layers = [{"name": l.name, "type": l.type, "output_shape": l.output_shape, "units": l.units}
                  for l in inspect_layers(model, torch.zeros(1, 3, 16, 16))]  # fmt: skip
        model.gate.calls = 0
        record = {"id": "late-gate", "kind": "image", "input": CONTRACT, "layers": layers, "labels": None}
        params = ActivationMaximizationParams.model_validate(
            {"objective": {"type": "channel", "layer": "relu", "units": [0, 1]}, "steps": 20, "size": 24}
        )
        return execute(model, record, params, device="cpu").document["images"]

    late = run(closed=20)  # the 20 optimization steps see it silent; the measurement sees it fire
    assert late[0]["activation"] > 0 and late[0]["dead"] is False and late[1]["dead"] is False
    never = run(closed=10**9)
    assert never[0]["activation"] == 0 and never[0]["dead"] is True and never[1]["dead"] is False


def test_evaluate_reports_activation_robustness_and_top_unit():
    model = Tiny()
    objective = make_objective("class", "fc", [0, 1, 2, 3])
    result = tiny_render(model, objective, steps=30)
    measured = measure_images(
        model, objective, result.images, to_input=ModelInput(CONTRACT, "cpu"), transforms=standard(24), generator=gen()
    )
    with torch.no_grad():
        logits = model(ModelInput(CONTRACT, "cpu")(result.images))
    assert measured["activation"] == pytest.approx(logits[range(4), [0, 1, 2, 3]].tolist(), rel=1e-5)
    assert measured["top_unit"] == logits.argmax(1).tolist()
    assert measured["is_top_unit"] == [t == u for t, u in zip(logits.argmax(1).tolist(), [0, 1, 2, 3])]
    assert all(math.isfinite(v) for v in measured["robust_activation"])


def test_params_validate_the_contract_and_the_limits():
    defaults = ActivationMaximizationParams.model_validate({"objective": {"type": "class", "units": ["red circle"]}})
    assert (defaults.size, defaults.steps, defaults.lr, defaults.optimizer) == (128, 256, 0.05, "adam")
    assert (defaults.parameterization, defaults.decorrelate, defaults.transforms, defaults.seed) == (
        "fft",
        True,
        "standard",
        0,
    )
    assert defaults.images_per_unit == 1 and defaults.objective.layer is None
    listed = ActivationMaximizationParams.model_validate(
        {
            "objective": {"type": "channel", "layer": "x", "units": [1]},
            "transforms": ["jitter", {"type": "rotate", "degrees": 5}],
        }
    )
    assert listed.transform_specs() == [{"type": "jitter", "pixels": 8}, {"type": "rotate", "degrees": 5.0}]
    bad = [
        ({"size": MAX_SIZE + 1}, f"limit of {MAX_SIZE}"),
        ({"steps": MAX_STEPS + 1}, f"limit of {MAX_STEPS}"),
        ({"objective": {"type": "channel", "units": [1]}}, "needs `layer`"),
        ({"objective": {"type": "neuron", "layer": "x"}}, "needs `units`"),
        ({"objective": {"type": "layer", "layer": "x", "units": [1]}}, "no units"),
        ({"objective": {"type": "direction", "layer": "x"}}, "vector"),
        ({"objective": {"type": "channel", "layer": "x", "units": ["a"]}}, "label names"),
        ({"thresholds": [0]}, "threshold"),
        ({"surprise": 1}, "Extra inputs"),
    ]
    for change, needle in bad:
        body = {"objective": {"type": "channel", "layer": "x", "units": [1]}, **change}
        with pytest.raises(ValidationError) as info:
            ActivationMaximizationParams.model_validate(body)
        assert needle in str(info.value), (change, str(info.value))
