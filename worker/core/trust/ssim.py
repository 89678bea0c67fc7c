"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004), batched, in torch.

The paper's parameters: an 11x11 Gaussian window of sigma 1.5 (normalized to sum 1),
C1 = (0.01 L)^2 and C2 = (0.03 L)^2 for data range L, population (not sample) variances, and the
mean of the SSIM map over the positions where the window lies wholly inside the image (the
paper's MATLAB code filters 'valid'; scikit-image filters with reflection and then crops the
same border, which gives the same mean). A window may be restricted to a box of each map
(`boxes`): the windows wholly inside it, as if the map had been cropped to the box.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """The 1-D Gaussian taps [size], float64, summing to 1 (the 2-D window is their outer product)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map [N, H, W] scaled to [0, 1] by its own minimum and maximum (a constant map -> 0)."""
    values = maps.detach().to(torch.float64)
    low = values.flatten(1).amin(dim=1).view(-1, 1, 1)
    high = values.flatten(1).amax(dim=1).view(-1, 1, 1)
    span = high - low
    return torch.where(span > 0, (values - low) / torch.where(span > 0, span, 1.0), 0.0)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The SSIM of each pair of maps a[i], b[i] ([N, H, W] each, H and W at least WINDOW) at
    every position where the window lies wholly inside: [N, H - WINDOW + 1, W - WINDOW + 1],
    float64; entry [i, y, x] is the window whose top-left pixel is (y, x)."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected two [N, H, W] stacks of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < WINDOW:
        raise ValueError(f"maps of {tuple(a.shape[1:])} are smaller than the {WINDOW}x{WINDOW} window")
    x = a.detach().to(torch.float64)[:, None]
    y = b.detach().to(torch.float64)[:, None]
    taps = gaussian_window().to(x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, taps.view(1, 1, WINDOW, 1))
        return F.conv2d(t, taps.view(1, 1, 1, WINDOW))

    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    # One blur of the five stacked moments instead of five blurs.
    moments = blur(torch.cat([x, y, x * x, y * y, x * y]))
    mu_x, mu_y, xx, yy, xy = moments.split(x.shape[0])
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator)[:, 0]


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = 1.0,
    boxes: Sequence[tuple[int, int, int, int]] | None = None,
) -> torch.Tensor:
    """Mean SSIM of each pair of maps a[i], b[i] ([N, H, W] each): [N], float64. With `boxes`
    ((y0, y1, x0, x1) per pair, at least WINDOW a side), pair i averages only the windows that
    lie wholly inside its box."""
    values = ssim_map(a, b, data_range)
    if boxes is None:
        return values.flatten(1).mean(dim=1).cpu()
    if len(boxes) != values.shape[0]:
        raise ValueError(f"{len(boxes)} boxes for {values.shape[0]} pairs")
    inside = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        if y1 - y0 < WINDOW or x1 - x0 < WINDOW:
            raise ValueError(f"box {(y0, y1, x0, x1)} is smaller than the {WINDOW}x{WINDOW} window")
        inside[i, y0 : y1 - WINDOW + 1, x0 : x1 - WINDOW + 1] = True
    return (torch.where(inside, values, 0.0).flatten(1).sum(dim=1) / inside.flatten(1).sum(dim=1)).cpu()
