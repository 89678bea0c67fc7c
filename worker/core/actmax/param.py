"""Image parameterizations: optimizable tensors -> a batch of RGB images in [0, 1].

Two bases (Olah et al. 2017, "Feature Visualization", and Lucid's `param.image`):
- `fft`: the image's 2-D Fourier spectrum, each frequency scaled by 1/f so that optimization
  steps are roughly whitened (natural images have a 1/f spectrum): low frequencies move first,
  which avoids the high-frequency noise of plain pixel ascent;
- `pixel`: the pixels themselves.
Both produce a "linear" image (unbounded, 0 = grey), then optionally mix colours with the square
root of ImageNet's colour correlation (so the optimizer works in decorrelated colour), then a
sigmoid (or clamp) maps it into [0, 1]. Images are always RGB in [0, 1]: the model's own input
(grayscale, its mean and std) is made from them by `render.ModelInput`.

The in-place edits (`scale_`, `blur_`, `mask_`) act on the linear image; regularizers use them
without knowing which basis is underneath.

The Fourier basis leaves out the Nyquist row and column (a 2-px checkerboard) and, with
`max_frequency`, every frequency above it: an image rendered larger than the model's input is
band-limited to what the model can see once the image is resized to its input, instead of
filling the unseen frequencies with aliasing junk. `linear_at`/`output` give the same image at
another size (exact Fourier interpolation for the fft basis, bicubic for pixels).
Initial values come from a seeded CPU generator: the same seed starts from the same image on
any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Lucid's colour correlation: the square root (via SVD) of ImageNet's RGB covariance; its columns
# normalized by the largest column norm.
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()

FFT_MAGIC = 4.0  # Lucid divides the inverse FFT by 4 so that the initial image is near grey


def rfft2d_freqs(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per pixel for each coefficient of an rfft2 of an height x width image."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


class ImageParam:
    """A batch of `n` RGB images of `size` (H, W), in [0, 1], from optimizable tensors."""

    def __init__(
        self,
        n: int,
        size: tuple[int, int],
        *,
        decorrelate: bool = True,
        valid: str = "sigmoid",
        device: str | torch.device = "cpu",
    ):
        if valid not in ("sigmoid", "clamp"):
            raise ValueError(f"valid must be sigmoid or clamp, not {valid!r}")
        self.n = n
        self.height, self.width = size
        self.decorrelate = decorrelate
        self.valid = valid
        self.device = torch.device(device)
        self._colour = COLOR_CORRELATION_NORMALIZED.to(self.device)

    # -- what subclasses define ------------------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def linear(self) -> torch.Tensor:
        """The image before colour mixing and squashing: [N, 3, H, W], 0 is grey."""
        raise NotImplementedError

    @torch.no_grad()
    def set_linear_(self, image: torch.Tensor) -> None:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    def to_rgb(self, linear: torch.Tensor) -> torch.Tensor:
        if self.decorrelate:
            linear = torch.einsum("nchw,dc->ndhw", linear, self._colour)
        if self.valid == "sigmoid":
            return torch.sigmoid(linear)
        return (linear + 0.5).clamp(0.0, 1.0)

    def __call__(self) -> torch.Tensor:
        return self.to_rgb(self.linear())

    def linear_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The linear image resampled to `size` (bicubic)."""
        if tuple(size) == (self.height, self.width):
            return self.linear()
        return F.interpolate(self.linear(), size=tuple(size), mode="bicubic", align_corners=False)

    def output(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The images at `size` (default: the working size), RGB in [0, 1]."""
        return self.to_rgb(self.linear_at(size) if size is not None else self.linear())

    @torch.no_grad()
    def scale_(self, factor: float) -> None:
        """Multiply the linear image by `factor` (towards grey for factor < 1): L2 decay."""
        for tensor in self.parameters():
            tensor.mul_(factor)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.set_linear_(blur(self.linear(), sigma))

    @torch.no_grad()
    def mask_(self, mask: torch.Tensor) -> None:
        """Multiply the linear image by `mask` [N, 1, H, W] (0 makes a pixel grey)."""
        self.set_linear_(self.linear() * mask)


class PixelParam(ImageParam):
    def __init__(self, n, size, *, generator: torch.Generator, sd: float = 0.01, **kwargs):
        super().__init__(n, size, **kwargs)
        init = torch.randn(n, 3, self.height, self.width, generator=generator) * sd
        self.pixels = init.to(self.device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def linear(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def set_linear_(self, image: torch.Tensor) -> None:
        self.pixels.copy_(image)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.pixels.copy_(blur(self.pixels, sigma))


class FFTParam(ImageParam):
    """Lucid's `fft_image`: the spectrum (real and imaginary parts) is the parameter; each
    coefficient is scaled by 1 / max(|f|, 1/max(H, W)) ** decay_power; the image is the
    orthonormal inverse real FFT divided by 4."""

    def __init__(
        self,
        n,
        size,
        *,
        generator: torch.Generator,
        sd: float = 0.01,
        decay_power: float = 1.0,
        max_frequency: float | None = None,
        **kwargs,
    ):
        super().__init__(n, size, **kwargs)
        freqs = rfft2d_freqs(self.height, self.width)
        self.freqs = freqs.to(self.device)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / max(self.height, self.width)) ** decay_power
        # The Nyquist row and column (a 2-px checkerboard) are not parameterized: then the image
        # is exactly band-limited and `linear_at` can interpolate it to any larger size.
        keep = torch.ones_like(scale)
        if self.height % 2 == 0:
            keep[self.height // 2, :] = 0
        if self.width % 2 == 0:
            keep[:, -1] = 0
        if max_frequency is not None:
            # An image rendered larger than the model's input: the frequencies the model cannot
            # see (above its input's Nyquist limit, per axis) are not parameterized either.
            fy = torch.fft.fftfreq(self.height).abs()[:, None]
            fx = torch.fft.rfftfreq(self.width)[None, :]
            keep = keep * ((fy <= max_frequency) & (fx <= max_frequency))
        self.scale = (scale * keep).to(self.device)[None, None, :, :, None]  # [1, 1, H, W//2+1, 1]
        init = torch.randn(n, 3, *freqs.shape, 2, generator=generator) * sd
        self.spectrum = init.to(self.device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def linear(self) -> torch.Tensor:
        scaled = torch.view_as_complex(self.spectrum * self.scale)
        image = torch.fft.irfftn(scaled, s=(self.height, self.width), dim=(-2, -1), norm="ortho")
        return image / FFT_MAGIC

    def linear_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The same image at a larger size, by zero-padding its spectrum (exact interpolation of
        a band-limited image: sampled back at the working grid it gives `linear()`)."""
        height, width = size
        if (height, width) == (self.height, self.width):
            return self.linear()
        if height < self.height or width < self.width:
            return super().linear_at(size)
        small = torch.view_as_complex(self.spectrum * self.scale)
        big = small.new_zeros(*small.shape[:-2], height, width // 2 + 1)
        positive = (self.height + 1) // 2  # rows of non-negative frequency
        big[..., :positive, : small.shape[-1]] = small[..., :positive, :]
        big[..., height - (self.height - positive) :, : small.shape[-1]] = small[..., positive:, :]
        gain = math.sqrt(height * width / (self.height * self.width))
        return torch.fft.irfftn(big, s=(height, width), dim=(-2, -1), norm="ortho") * gain / FFT_MAGIC

    @torch.no_grad()
    def set_linear_(self, image: torch.Tensor) -> None:
        spectrum = torch.fft.rfftn(image * FFT_MAGIC, dim=(-2, -1), norm="ortho")
        safe = torch.where(self.scale > 0, self.scale, torch.ones_like(self.scale))
        self.spectrum.copy_(torch.where(self.scale > 0, torch.view_as_real(spectrum) / safe, 0.0))

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        # A Gaussian blur is a product in the Fourier domain: exact (circular), and cheap.
        response = torch.exp(-2.0 * math.pi**2 * sigma**2 * self.freqs**2)
        self.spectrum.mul_(response[None, None, :, :, None])


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] (reflect padding)."""
    kernel = gaussian_kernel1d(sigma).to(image.device, image.dtype)
    radius = kernel.numel() // 2
    channels = image.shape[1]
    if radius >= min(image.shape[-2:]):
        radius = min(image.shape[-2:]) - 1
        kernel = kernel[kernel.numel() // 2 - radius : kernel.numel() // 2 + radius + 1]
        kernel = kernel / kernel.sum()
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.pad(image, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, horizontal, groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, vertical, groups=channels)


def make_param(
    kind: str,
    n: int,
    size: int | tuple[int, int],
    *,
    generator: torch.Generator,
    decorrelate: bool = True,
    valid: str = "sigmoid",
    device: str | torch.device = "cpu",
    sd: float = 0.01,
    max_frequency: float | None = None,
    magnitude: torch.Tensor | None = None,
) -> ImageParam:
    """`fft`, `pixel` or `maco`; the initial values come from `generator` (a CPU generator, so the
    same seed starts from the same image on any device). `magnitude`: maco's fixed Fourier
    magnitude (`maco.dataset_spectrum`), None for the 1/f prior; maco ignores `sd`."""
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if kind == "maco":
        from worker.core.actmax.maco import MacoParam  # maco.py builds on this module

        return MacoParam(
            n, shape, generator=generator, magnitude=magnitude, max_frequency=max_frequency,
            decorrelate=decorrelate, valid=valid, device=device,
        )  # fmt: skip
    classes = {"fft": FFTParam, "pixel": PixelParam}
    if kind not in classes:
        raise ValueError(f"unknown parameterization {kind!r}; use fft, pixel or maco")
    extra = {"max_frequency": max_frequency} if kind == "fft" else {}
    return classes[kind](
        n, shape, generator=generator, decorrelate=decorrelate, valid=valid, device=device, sd=sd, **extra
    )
