"""MACO: magnitude-constrained feature visualization (Fel et al., NeurIPS 2023, "Unlocking Feature
Visualization for Deeper Networks with MAgnitude Constrained Optimization"; reference: Xplique's
`features_visualizations/maco.py`).

The image is the inverse real FFT of `magnitude * exp(i * phase)`: the magnitude is fixed (the
average Fourier magnitude of a dataset's images, or a 1/f prior) and only the phase is optimized.
Natural images of a kind share their magnitude spectrum and differ mostly in their phase, so the
optimization stays among images with natural statistics; this is what makes feature
visualization work on deep modern networks where Lucid's recipe (`FFTParam`) degrades.

Differences from the reference, and why:
- the phase starts uniform in [-pi, pi] (a random phase over the whole circle) and is used as
  is; the reference draws it from N(0, 1) and standardizes it at every step, which would make
  `set_linear_` (a seed image's phase) impossible to express;
- the reference standardizes the spatial image (mean 0, std 1) at every step. With a fixed
  magnitude the image's energy does not depend on the phase (Parseval), so that standardization
  is one constant factor: it is folded into the magnitude buffer once (`std`). The mean is not
  a phase (a real image's DC coefficient is real: its "phase" can only be 0 or pi), so MACO
  leaves it out of the magnitude and keeps it as a fixed per-channel mean (`offset`): 0 (grey)
  for a random start, the seed's mean colour for a start from an image;
- the buffer is made *realizable* so that the delivered image's spectrum has exactly the fixed
  magnitude: the DC, the Nyquist row and column are 0 (as in `FFTParam`: the image is then
  band-limited and `linear_at` interpolates it exactly), the fx = 0 column is made symmetric and
  its phase antisymmetric (the Hermitian symmetry of a real image's spectrum). Without that,
  irfft2 silently drops part of the spectrum and the magnitude is not what was asked;
- several images (units) in one batch: the phase is [n, 3, H, W//2+1], one buffer for all.

Colour and values: the magnitude is that of the *linear* image (before `ImageParam.to_rgb`'s
colour mixing and sigmoid), in `torch.fft.rfft2(..., norm="ortho")` units. `dataset_spectrum`
therefore maps the dataset's RGB images back through the inverse sigmoid (logit) and the
inverse colour mixing before taking their spectrum: the spectrum is that of the images' own
linear versions, in the same basis as the optimized one.

Regularizers: the in-place edits `scale_` (L2 decay), `blur_` (blur every n steps) and `mask_`
(norm and contribution clipping) change an image's magnitude, which MACO keeps fixed; acting on
the phase only would make `blur_` a no-op (a Gaussian has zero phase) and the others arbitrary.
They raise `UnsupportedByMaco` instead (MACO_UNSUPPORTED_REGULARIZERS names them, for request
validation); total variation (a penalty, through the gradient) is supported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from worker.core.actmax.param import COLOR_CORRELATION_NORMALIZED, ImageParam, rfft2d_freqs

# The job parameters of the regularizers that edit the image in place (see the module docstring).
MACO_UNSUPPORTED_REGULARIZERS = ("l2", "blur_every", "clip_norm_percentile", "clip_contribution_percentile")

# The RMS of the linear image, per value mapping. Sigmoid: 1.0, the reference's standardization;
# after the colour mixing the pre-sigmoid RGB has a std of about 0.6 (most pixels in 0.2-0.8).
# Clamp (rgb = linear + 0.5): 0.4 gives an RGB std of about 0.25, that of natural photos.
DEFAULT_STD = {"sigmoid": 1.0, "clamp": 0.4}

LOGIT_EPS = 0.5 / 255  # half an 8-bit step: 0 and 1 map to about -/+6.2 instead of infinity


class UnsupportedByMaco(ValueError):
    """An operation that would change the fixed Fourier magnitude (an L2-decay, blur or clipping
    regularizer)."""


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_valid(valid: str) -> None:
    if valid not in ("sigmoid", "clamp"):
        raise ValueError(f"valid must be sigmoid or clamp, not {valid!r}")


def rgb_to_linear(
    images: torch.Tensor, *, decorrelate: bool = True, valid: str = "sigmoid", eps: float = LOGIT_EPS
) -> torch.Tensor:
    """The inverse of `ImageParam.to_rgb`: RGB [N, 3, H, W] in [0, 1] -> the linear image that
    renders as it (logit, clamped to [eps, 1 - eps], or minus 0.5; then the inverse colour
    mixing)."""
    _check_valid(valid)
    images = images.float()
    values = torch.logit(images, eps=eps) if valid == "sigmoid" else images - 0.5
    if not decorrelate:
        return values
    inverse = torch.linalg.inv(COLOR_CORRELATION_NORMALIZED.double()).float().to(images.device)
    return torch.einsum("ndhw,cd->nchw", values, inverse)


def spectrum_rms(magnitude: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The root mean square, over pixels and channels, of a linear image with this rfft2
    (norm="ortho") magnitude [..., C, H, W//2+1], whatever its phase (Parseval: the columns
    other than fx = 0 and the Nyquist column stand for two coefficients each). The mean counts,
    through the DC magnitude. One value per leading index."""
    height, width = _pair(size)
    weight = torch.full((width // 2 + 1,), 2.0, dtype=torch.float64, device=magnitude.device)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    energy = (magnitude.double() ** 2 * weight).sum(dim=(-3, -2, -1))
    return (energy / (magnitude.shape[-3] * height * width)).sqrt().float()


def _unused_coefficients(height: int, width: int) -> torch.Tensor:
    """The rfft2 coefficients MACO never uses: the DC and the Nyquist row and column."""
    unused = torch.zeros(height, width // 2 + 1, dtype=torch.bool)
    unused[0, 0] = True
    if height % 2 == 0:
        unused[height // 2, :] = True
    if width % 2 == 0:
        unused[:, -1] = True
    return unused


def natural_spectrum(
    size: int | tuple[int, int], *, channels: int = 3, decay: float = 1.0, rms: float = 1.0
) -> torch.Tensor:
    """The 1/f^decay magnitude of natural images, [channels, H, W//2+1] float32, the prior used
    without a dataset. Every channel alike: in the decorrelated colour basis the channels are
    whitened (equal variance). The DC and Nyquist coefficients, which MACO does not use, are 0;
    scaled so that the linear image it makes has RMS `rms` (`spectrum_rms`), the same units as
    `dataset_spectrum` (whose RMS is that of the dataset's linear images)."""
    height, width = _pair(size)
    freqs = rfft2d_freqs(height, width)
    magnitude = 1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay
    magnitude[_unused_coefficients(height, width)] = 0.0
    magnitude = magnitude.expand(channels, -1, -1).clone()
    return (magnitude * (rms / spectrum_rms(magnitude, size))).float()


def _as_batch(images) -> torch.Tensor:
    batch = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if batch.dtype == torch.uint8:
        batch = batch.float() / 255.0
    batch = batch.float()
    if batch.dim() == 3:
        batch = batch[None]
    if batch.dim() != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(f"expected RGB or grey images [N, C, H, W] (or [C, H, W]), got {tuple(batch.shape)}")
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    return batch


@torch.no_grad()
def dataset_spectrum(
    images: Iterable,
    size: int | tuple[int, int],
    *,
    decorrelate: bool = True,
    valid: str = "sigmoid",
    eps: float = LOGIT_EPS,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The average rfft2 (norm="ortho") magnitude of a dataset's images, [3, H, W//2+1] float32.

    `images`: batches [N, C, H, W] (or single [C, H, W]) of RGB (C = 3) or grey (C = 1, taken as
    R = G = B) images in [0, 1] (uint8 is divided by 255), tensors or arrays. Each is resized to
    `size` (bilinear, antialiased when shrinking, as `ModelInput` resizes), mapped to the linear
    image that renders as it (`rgb_to_linear` with the same `decorrelate` and `valid` as the
    parameterization that will use the spectrum), and the magnitudes are averaged, per channel
    and frequency. DC and Nyquist coefficients included (MACO drops them). Save it with
    `np.save(path, spectrum.numpy())`, pass it back as `torch.from_numpy(np.load(path))`.
    """
    height, width = _pair(size)
    total: torch.Tensor | None = None
    count = 0
    for item in images:
        batch = _as_batch(item).to(device)
        if tuple(batch.shape[-2:]) != (height, width):
            shrinking = batch.shape[-2] > height or batch.shape[-1] > width
            batch = F.interpolate(
                batch, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
            )
        linear = rgb_to_linear(batch, decorrelate=decorrelate, valid=valid, eps=eps)
        magnitude = torch.fft.rfft2(linear.double(), norm="ortho").abs().sum(0)
        total = magnitude if total is None else total + magnitude
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("the dataset gave no images")
    return (total / count).float().cpu()


def realizable_magnitude(
    magnitude: torch.Tensor,
    size: int | tuple[int, int],
    *,
    std: float | None = None,
    max_frequency: float | None = None,
) -> torch.Tensor:
    """`magnitude` ([C, H, W//2+1] or [B, C, H, W//2+1], C in 1 or 3) as MACO uses it, [B, C, H,
    W//2+1]: DC and Nyquist coefficients 0, the fx = 0 column symmetric (a real image's
    |X[k, 0]| = |X[-k, 0]|), frequencies above `max_frequency` (cycles per pixel, per axis) 0,
    then each of the B magnitudes scaled so that its linear image has RMS `std` (None: as
    given). With these, irfft2 of magnitude * exp(i * phase) has exactly this magnitude."""
    height, width = _pair(size)
    m = torch.as_tensor(magnitude).detach().float().clone()
    if m.dim() == 3:
        m = m[None]
    if m.dim() != 4 or m.shape[1] not in (1, 3) or tuple(m.shape[-2:]) != (height, width // 2 + 1):
        raise ValueError(
            f"a MACO magnitude for {height}x{width} images is [C, {height}, {width // 2 + 1}] or "
            f"[B, C, {height}, {width // 2 + 1}] with C 1 or 3, not {tuple(m.shape)}: compute the "
            "spectrum at the size the images are rendered at"
        )
    if not torch.isfinite(m).all() or (m < 0).any():
        raise ValueError("a magnitude is finite and >= 0")
    rows = torch.arange(height)
    m[..., :, 0] = 0.5 * (m[..., :, 0] + m[..., (-rows) % height, 0])
    m[..., _unused_coefficients(height, width).to(m.device)] = 0.0
    if max_frequency is not None:
        fy = torch.fft.fftfreq(height).abs()[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        m = m * ((fy <= max_frequency) & (fx <= max_frequency)).to(m.device)
    if std is not None:
        rms = spectrum_rms(m, size)
        if (rms <= 0).any():
            raise ValueError("the magnitude is 0 at every frequency MACO uses")
        m = m * (float(std) / rms).view(-1, 1, 1, 1)
    return m


class MacoParam(ImageParam):
    """`n` images of `size` whose linear image is irfft2(magnitude * exp(i * phase)) + offset.

    - `phase` [n, 3, H, W//2+1], uniform in [-pi, pi] from `generator`: the only parameter
      (in its fx = 0 column only the positive-frequency rows are used: the others are their
      mirror, negated, as in any real image's spectrum);
    - `magnitude` [1 or n, 1 or 3, H, W//2+1]: fixed, never modified (`realizable_magnitude` of
      the given one, default the 1/f `natural_spectrum`, scaled to RMS `std`: "auto" is
      DEFAULT_STD for `valid`, None keeps the given scale, e.g. a dataset spectrum's own);
    - `offset` [n, 3, 1, 1]: the linear image's mean, fixed: 0 (grey), or a seed's mean.
    """

    def __init__(
        self,
        n: int,
        size: tuple[int, int],
        *,
        generator: torch.Generator,
        magnitude: torch.Tensor | None = None,
        std: float | None | Literal["auto"] = "auto",
        max_frequency: float | None = None,
        **kwargs,
    ):
        super().__init__(n, size, **kwargs)
        size = (self.height, self.width)
        if std == "auto":
            std = DEFAULT_STD[self.valid]
        if magnitude is None:
            magnitude = natural_spectrum(size)
        m = realizable_magnitude(magnitude, size, std=std, max_frequency=max_frequency)
        if m.shape[0] not in (1, n):
            raise ValueError(f"{m.shape[0]} magnitudes for {n} images")
        self.magnitude = m.to(self.device)
        self.offset = torch.zeros(n, 3, 1, 1, device=self.device)
        init = torch.rand(n, 3, self.height, self.width // 2 + 1, generator=generator) * (2 * math.pi) - math.pi
        self.phase = init.to(self.device).requires_grad_(True)
        rows = torch.arange(self.height)
        negative = rows > self.height // 2
        self._mirror = torch.where(negative, (self.height - rows) % self.height, rows).to(self.device)
        self._mirror_sign = torch.where(negative, -1.0, 1.0).to(self.device)

    # -- the parameterization -------------------------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        return [self.phase]

    def used_phase(self) -> torch.Tensor:
        """The phase as the image uses it: the fx = 0 column made antisymmetric."""
        column = self.phase[..., :, 0].index_select(-1, self._mirror) * self._mirror_sign
        return torch.cat([column.unsqueeze(-1), self.phase[..., 1:]], dim=-1)

    def spectrum(self) -> torch.Tensor:
        """The images' rfft2 (norm="ortho") without their mean: [n, 3, H, W//2+1] complex."""
        return torch.polar(self.magnitude.expand(self.n, 3, -1, -1), self.used_phase())

    def linear(self) -> torch.Tensor:
        image = torch.fft.irfftn(self.spectrum(), s=(self.height, self.width), dim=(-2, -1), norm="ortho")
        return image + self.offset

    def linear_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The same image at a larger size, by zero-padding its spectrum (exact interpolation:
        the image is band-limited); bicubic when smaller."""
        height, width = size
        if (height, width) == (self.height, self.width):
            return self.linear()
        if height < self.height or width < self.width:
            return super().linear_at(size)
        small = self.spectrum()
        big = small.new_zeros(*small.shape[:-2], height, width // 2 + 1)
        positive = (self.height + 1) // 2  # rows of non-negative frequency
        big[..., :positive, : small.shape[-1]] = small[..., :positive, :]
        big[..., height - (self.height - positive) :, : small.shape[-1]] = small[..., positive:, :]
        gain = math.sqrt(height * width / (self.height * self.width))
        image = torch.fft.irfftn(big, s=(height, width), dim=(-2, -1), norm="ortho") * gain
        return image + self.offset

    @torch.no_grad()
    def set_linear_(self, image: torch.Tensor) -> None:
        """Take `image`'s ([n, 3, H, W] linear) phase and mean; the magnitude stays the fixed one,
        so the image is only approximated (`reconstruction_error` says how far), unless the
        magnitude is its own (`from_image(..., magnitude=None)`)."""
        image = image.to(self.device, torch.float32)
        self.phase.copy_(torch.fft.rfft2(image, norm="ortho").angle().expand_as(self.phase))
        self.offset.copy_(image.mean(dim=(-2, -1), keepdim=True).expand_as(self.offset))

    @classmethod
    @torch.no_grad()
    def from_image(
        cls,
        images: torch.Tensor,
        *,
        magnitude: torch.Tensor | None = None,
        std: float | None | Literal["seed"] = "seed",
        decorrelate: bool = True,
        valid: str = "sigmoid",
        device: str | torch.device = "cpu",
        max_frequency: float | None = None,
        eps: float = LOGIT_EPS,
    ) -> MacoParam:
        """Start from seed images (RGB [n, 3, H, W] in [0, 1]), for feature accentuation.

        `magnitude=None`: each seed's own magnitude is the fixed one; the start is the seed
        (exactly, but for its Nyquist row and column, which MACO does not use, and for pixels
        at 0 or 1, clamped by the logit's `eps`). A spectrum (`dataset_spectrum`,
        `natural_spectrum`): MACO's constraint as in a random start; the start has the seed's
        phase and mean, not its magnitude, so it only approximates the seed (phase carries most
        of an image's structure; `reconstruction_error` says how far). `std="seed"` scales the
        spectrum, per seed, to the RMS of the seed's own linear image; a number or None as in
        the constructor."""
        seeds = _as_batch(images).to(device)
        n, _, height, width = seeds.shape
        linear = rgb_to_linear(seeds, decorrelate=decorrelate, valid=valid, eps=eps)
        own = realizable_magnitude(torch.fft.rfft2(linear, norm="ortho").abs().cpu(), (height, width))
        if magnitude is None:
            magnitude, std = own, None
        elif std == "seed":
            shared = realizable_magnitude(magnitude, (height, width), max_frequency=max_frequency)
            magnitude = shared * (spectrum_rms(own, (height, width)) / spectrum_rms(shared, (height, width))).view(
                -1, 1, 1, 1
            )
            std = None
        param = cls(
            n,
            (height, width),
            generator=torch.Generator().manual_seed(0),  # the phase is the seed's
            magnitude=magnitude,
            std=std,
            max_frequency=max_frequency,
            decorrelate=decorrelate,
            valid=valid,
            device=device,
        )
        param.set_linear_(linear)
        return param

    @torch.no_grad()
    def reconstruction_error(self, images: torch.Tensor) -> torch.Tensor:
        """Per image, the root mean square difference between the current images and `images`
        (RGB [n, 3, H, W] in [0, 1], at the working size), in RGB units: 0 is the same image,
        about 0.3 two unrelated photos. After `from_image`, how far the start is from the seed."""
        target = _as_batch(images).to(self.device)
        return (self() - target).pow(2).flatten(1).mean(1).sqrt().cpu()

    # -- the edits regularizers ask for: they would change the fixed magnitude -------------------
    def scale_(self, factor: float) -> None:
        raise UnsupportedByMaco(
            "the maco parameterization keeps the Fourier magnitude fixed, and shrinking the image "
            "would change it: L2 decay (`l2`) does not apply to maco (total variation `tv` does)"
        )

    def blur_(self, sigma: float) -> None:
        raise UnsupportedByMaco(
            "the maco parameterization keeps the Fourier magnitude fixed, and a blur only changes the "
            "magnitude: `blur_every` does not apply to maco (total variation `tv` does)"
        )

    def mask_(self, mask: torch.Tensor) -> None:
        raise UnsupportedByMaco(
            "the maco parameterization keeps the Fourier magnitude fixed, and masking pixels would "
            "change it: `clip_norm_percentile` and `clip_contribution_percentile` do not apply to "
            "maco (total variation `tv` does)"
        )


# -- the transparency map ------------------------------------------------------------------------


@torch.no_grad()
def accumulate_transparency(accumulated: torch.Tensor | None, image_grad: torch.Tensor) -> torch.Tensor:
    """Add one step's |d loss / d image| (image_grad [N, 3, H, W], the RGB image's gradient),
    summed over colour, to `accumulated` [N, H, W] (None at the first step); returns it."""
    step = image_grad.detach().abs().sum(1)
    return step if accumulated is None else accumulated.add_(step)


@torch.no_grad()
def transparency(accumulated: torch.Tensor, *, percentile: float = 100.0) -> torch.Tensor:
    """The alpha map [N, 1, H, W] in [0, 1] from the accumulated |gradient| [N, H, W]: per image,
    clipped at its `percentile` and divided by the maximum (100: divided by the maximum only;
    the reference's display uses 80, which makes the top 20% of pixels opaque). An image whose
    gradient was always 0 gets alpha 0."""
    flat = accumulated.detach().float().flatten(1)
    if percentile < 100:
        flat = torch.minimum(flat, torch.quantile(flat, percentile / 100.0, dim=1, keepdim=True))
    top = flat.amax(1, keepdim=True)
    alpha = torch.where(top > 0, flat / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(flat))
    return alpha.view(accumulated.shape[0], 1, *accumulated.shape[-2:])
