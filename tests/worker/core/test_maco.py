"""MACO (worker/core/actmax/maco.py) without Redis: the magnitude stays exactly fixed through
render(), only the phase is optimized, seeds, the spectra against literal numpy and closed forms,
seed images, the transparency map, and a sanity run on the built-in shapes-cnn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from service.kinds.activation_maximization import standard_transforms
from worker.core.actmax import ModelInput, make_objective, make_param, make_regularizers, make_transforms, render
from worker.core.actmax.maco import (
    MacoParam,
    UnsupportedByMaco,
    accumulate_transparency,
    dataset_spectrum,
    natural_spectrum,
    rgb_to_linear,
    spectrum_rms,
    transparency,
)
from worker.core.actmax.param import COLOR_CORRELATION_NORMALIZED


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.conv2(self.relu1(self.conv1(x)))


CONTRACT = {"image": {"size": [16, 16], "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def small_render(param, steps=12, **kw):
    objective = make_objective("channel", "conv2", list(range(param.n)))
    return render(
        Small(), objective, param, to_input=ModelInput(CONTRACT, "cpu"),
        transforms=make_transforms(standard_transforms(param.height)), generator=gen(5), steps=steps, lr=0.2, **kw,
    )  # fmt: skip


def full_spectrum_magnitude(linear: torch.Tensor) -> np.ndarray:
    """|rfft2| of the mean-free image, by numpy (norm="ortho")."""
    array = linear.detach().double().numpy()
    array = array - array.mean(axis=(-2, -1), keepdims=True)
    return np.abs(np.fft.rfft2(array, norm="ortho"))


# ---------------------------------------------------------------------------------------------
# the constraint


@pytest.mark.parametrize("size", [(24, 24), (23, 20)])
@pytest.mark.parametrize("spectrum", ["natural", "given"])
def test_the_magnitude_stays_exactly_fixed_through_render(size, spectrum):
    magnitude = None
    if spectrum == "given":  # an arbitrary spectrum, [1, H, W//2+1]: one magnitude for every channel
        magnitude = torch.rand(1, size[0], size[1] // 2 + 1, generator=gen(9)) + 0.1
    param = make_param("maco", 2, size, generator=gen(1), magnitude=magnitude)
    fixed = param.magnitude.clone()
    before = param.linear().detach().clone()
    result = small_render(param, regularizers=make_regularizers(tv=0.05))
    after = param.linear().detach()
    assert (after - before).abs().max() > 0.1  # the image moved
    assert result.history[-3:].mean() > result.history[:3].mean()
    assert torch.equal(param.magnitude, fixed)  # the buffer itself is never written
    expected = fixed.expand(2, 3, -1, -1).double().numpy()
    measured = full_spectrum_magnitude(after)
    assert np.abs(measured - expected).max() < 1e-5 * expected.max()
    # ... and so has the delivered RGB image, mapped back to its linear image
    delivered = rgb_to_linear(result.images, eps=1e-7)
    assert np.abs(full_spectrum_magnitude(delivered) - expected).max() < 1e-3 * expected.max()
    # The buffer is the given spectrum up to one factor, where MACO uses it (not the DC, the
    # Nyquist row and column; the fx = 0 column is symmetric, so keep its positive rows).
    source = (natural_spectrum(size) if magnitude is None else magnitude)[0]
    keep = fixed[0, 0] > 0
    keep[:, 0] = False
    ratio = fixed[0, 0][keep] / source[keep]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)


def test_only_the_phase_is_a_parameter():
    param = make_param("maco", 3, 16, generator=gen())
    assert param.parameters() == [param.phase]
    assert param.phase.shape == (3, 3, 16, 9) and param.phase.requires_grad
    assert not param.magnitude.requires_grad and not param.offset.requires_grad
    assert -math.pi <= param.phase.min() and param.phase.max() <= math.pi
    param()[:, 0].mean().backward()
    assert param.phase.grad.abs().sum() > 0 and param.magnitude.grad is None


def test_the_image_is_standardized_like_the_reference():
    param = make_param("maco", 4, 32, generator=gen())
    linear = param.linear().detach()
    # the reference standardizes the image (mean 0, std 1): here folded into the magnitude
    assert abs(linear.mean().item()) < 1e-6 and abs(linear.pow(2).mean().sqrt().item() - 1.0) < 1e-4
    images = param()
    assert 0 < images.min() and images.max() < 1 and abs(images.mean().item() - 0.5) < 0.05
    quiet = natural_spectrum(32, rms=0.3)
    standardized = make_param("maco", 1, 32, generator=gen(), magnitude=quiet)
    kept = MacoParam(1, (32, 32), generator=gen(), magnitude=quiet, std=None)
    clamped = make_param("maco", 1, 32, generator=gen(), magnitude=quiet, valid="clamp")
    rms = lambda p: p.linear().pow(2).mean().sqrt().item()  # noqa: E731
    assert abs(rms(standardized) - 1.0) < 1e-4  # std "auto" with sigmoid: the reference's 1
    assert abs(rms(clamped) - 0.4) < 1e-4  # with clamp: an RGB std of about 0.25
    assert abs(rms(kept) - 0.3) < 1e-4  # None: as given


def test_same_seed_same_image_other_seed_other_image():
    first = make_param("maco", 2, 20, generator=gen(3))()
    second = make_param("maco", 2, 20, generator=gen(3))()
    other = make_param("maco", 2, 20, generator=gen(4))()
    assert torch.equal(first, second)
    assert (first - other).abs().max() > 0.1


def test_the_regularizers_that_would_change_the_magnitude_are_refused():
    param = make_param("maco", 1, 16, generator=gen())
    names = {
        "l2": dict(l2=0.05),
        "blur_every": dict(blur_every=1),
        "clip_norm_percentile": dict(clip_norm_percentile=10),
        "clip_contribution_percentile": dict(clip_contribution_percentile=10),
    }
    for name, kwargs in names.items():
        with pytest.raises(UnsupportedByMaco, match=name):
            small_render(param, steps=2, regularizers=make_regularizers(**kwargs))


def test_linear_at_is_the_same_band_limited_image_at_a_larger_size():
    param = make_param("maco", 2, (12, 10), generator=gen())
    small = param.linear().detach()
    big = param.linear_at((24, 30)).detach()
    assert big.shape == (2, 3, 24, 30)
    assert torch.allclose(big[..., ::2, ::3], small, atol=1e-5)  # the working grid is on the big one


# ---------------------------------------------------------------------------------------------
# spectra


def numpy_linear(images: np.ndarray, eps: float, decorrelate: bool, valid: str) -> np.ndarray:
    x = images.astype(np.float64)
    if valid == "sigmoid":
        x = np.clip(x, eps, 1 - eps)
        x = np.log(x / (1 - x))
    else:
        x = x - 0.5
    if decorrelate:
        inverse = np.linalg.inv(COLOR_CORRELATION_NORMALIZED.double().numpy())
        x = np.einsum("cd,ndhw->nchw", inverse, x)
    return x


@pytest.mark.parametrize("decorrelate,valid", [(True, "sigmoid"), (False, "clamp")])
def test_dataset_spectrum_is_the_literal_average_fourier_magnitude(decorrelate, valid):
    rng = np.random.default_rng(0)
    images = rng.random((7, 3, 12, 10)).astype(np.float32)
    images[0, :, :3] = 0.0  # saturated pixels: clamped by eps before the logit
    images[1, 1, 4:] = 1.0
    batches = [torch.from_numpy(images[:3]), images[3:6], torch.from_numpy(images[6])]  # [C, H, W] too
    spectrum = dataset_spectrum(batches, (12, 10), decorrelate=decorrelate, valid=valid, eps=0.01)
    expected = np.abs(np.fft.rfft2(numpy_linear(images, 0.01, decorrelate, valid), norm="ortho")).mean(0)
    assert spectrum.dtype == torch.float32 and spectrum.shape == (3, 12, 6)
    assert np.allclose(spectrum.numpy(), expected, rtol=1e-5, atol=1e-5)
    # grey images count as R = G = B; uint8 is divided by 255
    grey = rng.integers(0, 256, (2, 1, 12, 10), dtype=np.uint8)
    as_rgb = np.repeat(grey.astype(np.float32) / 255, 3, axis=1)
    expected = np.abs(np.fft.rfft2(numpy_linear(as_rgb, 0.01, decorrelate, valid), norm="ortho")).mean(0)
    assert np.allclose(
        dataset_spectrum([grey], (12, 10), decorrelate=decorrelate, valid=valid, eps=0.01), expected, atol=1e-4
    )


def test_dataset_spectrum_resizes_to_the_rendering_size():
    # a low-frequency cosine survives the antialiased halving: its peak stays at 2 cycles per image
    y = np.arange(64)[:, None] / 64
    image = 0.5 + 0.3 * np.cos(2 * np.pi * 2 * y) * np.ones((1, 48))
    batch = torch.from_numpy(np.repeat(image[None, None], 3, axis=1)).float()
    spectrum = dataset_spectrum([batch], (32, 24), decorrelate=False, valid="clamp")
    assert spectrum.shape == (3, 32, 13)
    ac = spectrum[0].clone()
    ac[0, 0] = 0
    assert ac.argmax().item() == 2 * 13  # row 2 (fy = 2 / 32), column 0


def test_natural_spectrum_is_one_over_f_scaled_to_an_rms():
    height, width = 16, 20
    spectrum = natural_spectrum((height, width), rms=0.7)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    used = np.ones_like(f, dtype=bool)
    used[0, 0] = used[height // 2, :] = used[:, -1] = False  # DC, Nyquist row and column
    product = spectrum[0].double().numpy()[used] * f[used]
    assert np.allclose(product, product[0], rtol=1e-5)  # magnitude * |f| is one constant
    assert (spectrum[:, ~used] == 0).all() and torch.equal(spectrum[0], spectrum[2])
    # its RMS, in the dataset spectrum's units: that of the image any phase gives (Parseval)
    assert abs(spectrum_rms(spectrum, (height, width)).item() - 0.7) < 1e-5
    image = MacoParam(1, (height, width), generator=gen(), magnitude=spectrum, std=None, decorrelate=False).linear()
    assert abs(image.pow(2).mean().sqrt().item() - 0.7) < 1e-5
    steeper = natural_spectrum((height, width), decay=2.0)[0].double().numpy()[used] * f[used] ** 2
    assert np.allclose(steeper, steeper[0], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# starting from an image (feature accentuation)


def smooth_seed(height=16, width=16, n=1) -> torch.Tensor:
    """An RGB image in (0, 1) whose linear image (logit, inverse colour mixing) is band-limited:
    a sum of cosines, nothing in the Nyquist row and column."""
    y = torch.arange(height)[:, None] / height
    x = torch.arange(width)[None, :] / width
    channels = [
        0.2 + 1.2 * torch.cos(2 * math.pi * (y + 2 * x)),
        -0.3 + 0.8 * torch.sin(2 * math.pi * 3 * y) + 0 * x,
        0.1 + 0.9 * torch.cos(2 * math.pi * (2 * y - x) + 0.3),
    ]
    linear = torch.stack(channels)[None].expand(n, -1, -1, -1)
    return torch.sigmoid(torch.einsum("nchw,dc->ndhw", linear, COLOR_CORRELATION_NORMALIZED))


def test_from_image_with_its_own_magnitude_starts_at_the_seed():
    seed = smooth_seed(n=2)
    param = MacoParam.from_image(seed)
    assert torch.allclose(param(), seed, atol=1e-5)
    assert (param.reconstruction_error(seed) < 1e-5).all()
    # a seed with energy in the Nyquist row and column (which MACO drops) is near, not equal
    rough = seed.clone()
    rough[..., ::2, :] += 0.02
    error = MacoParam.from_image(rough).reconstruction_error(rough)
    assert (0.005 < error).all() and (error < 0.02).all()


def test_from_image_with_a_fixed_magnitude_keeps_it_and_takes_the_seeds_phase_and_mean():
    seed = smooth_seed()
    param = MacoParam.from_image(seed, magnitude=natural_spectrum(16))
    linear = rgb_to_linear(seed)
    start = param.linear().detach()
    assert torch.allclose(start.mean(dim=(-2, -1)), linear.mean(dim=(-2, -1)), atol=1e-5)
    # the magnitude is the prior's (scaled to the seed's RMS), the phase the seed's where used
    assert np.allclose(full_spectrum_magnitude(start), param.magnitude.expand(1, 3, -1, -1).numpy(), atol=1e-5)
    ratio = spectrum_rms(param.magnitude, 16) / spectrum_rms(
        torch.fft.rfft2(linear - linear.mean((-2, -1), keepdim=True), norm="ortho").abs(), 16
    )
    assert abs(ratio.item() - 1.0) < 1e-4
    seed_spectrum = torch.fft.rfft2(linear, norm="ortho")
    start_spectrum = torch.fft.rfft2(start, norm="ortho")
    used = (param.magnitude[0].expand(3, -1, -1) > 0) & (seed_spectrum[0].abs() > 1e-3)
    difference = torch.remainder(start_spectrum[0].angle() - seed_spectrum[0].angle() + math.pi, 2 * math.pi) - math.pi
    assert difference[used].abs().max() < 1e-3
    # only approximated: the error is the RGB RMS difference, by hand
    error = param.reconstruction_error(seed)
    assert torch.allclose(error, (param() - seed).pow(2).flatten(1).mean(1).sqrt(), atol=1e-6)
    assert 0.01 < error.item() < 0.5


# ---------------------------------------------------------------------------------------------
# transparency


def test_transparency_is_the_accumulated_gradient_magnitude_normalized_per_image():
    g1 = torch.zeros(2, 3, 2, 2)
    g2 = torch.zeros(2, 3, 2, 2)
    g1[0, 0, 0, 0], g1[0, 2, 0, 0], g2[0, 1, 1, 1] = -2.0, 1.0, 6.0  # image 1's gradient stays 0
    accumulated = accumulate_transparency(accumulate_transparency(None, g1), g2)
    assert torch.equal(accumulated, torch.tensor([[[3.0, 0.0], [0.0, 6.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    alpha = transparency(accumulated)
    assert torch.equal(alpha, torch.tensor([[[[0.5, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]]))
    values = torch.arange(10.0).view(1, 2, 5)
    clipped = transparency(values, percentile=80)  # the 80th percentile of 0..9 is 7.2
    assert torch.allclose(clipped.flatten(), torch.clamp(torch.arange(10.0), max=7.2) / 7.2)


# ---------------------------------------------------------------------------------------------
# sanity on a trained model


def test_maco_raises_a_class_logit_of_shapes_cnn():
    from worker.core.actmax import measure_images
    from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn

    model = load_shapes_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    objective = make_objective("class", "classifier.2", [0, 5])  # red circle, horizontal stripes
    to_input = ModelInput(SHAPES_INPUT, "cpu")
    transforms = make_transforms(standard_transforms(64))
    param = make_param("maco", 2, 64, generator=gen())

    def activation(images):
        measured = measure_images(
            model, objective, images, to_input=to_input, transforms=transforms, generator=gen(), robust_samples=0
        )
        return torch.tensor(measured["activation"])

    start = activation(param.output().detach())
    result = render(
        model, objective, param, to_input=to_input, transforms=transforms, generator=gen(1), steps=24, lr=0.2
    )
    end = activation(result.images)
    assert (end > start + 2.0).all(), (start, end)


def test_make_param_names_maco():
    with pytest.raises(ValueError, match="maco"):
        make_param("lucid", 1, 8, generator=gen())
    assert isinstance(make_param("maco", 1, 8, generator=gen()), MacoParam)
    with pytest.raises(ValueError, match="size the images are rendered at"):
        make_param("maco", 1, 8, generator=gen(), magnitude=natural_spectrum(16))


def test_the_api_refuses_exactly_the_regularizers_maco_cannot_apply():
    """The API (no torch) keeps its own list of the in-place regularizers MACO refuses."""
    from service.kinds.activation_maximization import MACO_UNSUPPORTED_REGULARIZERS as refused_at_submit
    from worker.core.actmax.maco import MACO_UNSUPPORTED_REGULARIZERS as refused_by_the_core

    assert tuple(refused_at_submit) == tuple(refused_by_the_core)
