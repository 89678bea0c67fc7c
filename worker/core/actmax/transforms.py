"""Random image transforms applied before each step (transformation robustness, Lucid).

Lucid's standard set: pad 12 (grey), jitter 8, random scale 0.9-1.1, random rotation +-10
degrees, jitter 4. Every transform is batched with its own random draw per image.

Randomness: a transform does not draw numbers itself. It says how many uniform [0, 1) numbers
it needs per image (`dims`), and `__call__(x, u)` reads them from `u` [N, dims]. The render loop
draws all of a job's numbers up front from one seeded CPU generator and moves them to the device
once: the same seed gives the same transforms on any device, and no step waits on the host.

Consecutive scale and rotation transforms are merged into one affine resampling
(`grid_sample`), so that the image is interpolated once per step, not once per transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

GREY = 0.5


class Transform:
    dims: int = 0

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class Pad(Transform):
    def __init__(self, pixels: int, mode: str = "constant"):
        self.pixels = int(pixels)
        self.mode = mode

    def __call__(self, x, u):
        if self.pixels == 0:
            return x
        p = self.pixels
        if self.mode == "constant":
            return F.pad(x, (p, p, p, p), mode="constant", value=GREY)
        return F.pad(x, (p, p, p, p), mode="reflect")

    def describe(self):
        return {"type": "pad", "pixels": self.pixels, "mode": self.mode}


class Jitter(Transform):
    """A random crop of (H - d) x (W - d): the image moves by 0..d px in y and x, per image."""

    dims = 2

    def __init__(self, pixels: int):
        self.pixels = int(pixels)

    def __call__(self, x, u):
        d = self.pixels
        if d == 0:
            return x
        n, c, h, w = x.shape
        oh, ow = h - d, w - d
        if oh < 1 or ow < 1:
            raise ValueError(f"jitter {d} px is too large for a {h}x{w} image")
        oy = (u[:, 0] * (d + 1)).long().clamp_(max=d)
        ox = (u[:, 1] * (d + 1)).long().clamp_(max=d)
        rows = oy[:, None] + torch.arange(oh, device=x.device)
        cols = ox[:, None] + torch.arange(ow, device=x.device)
        x = x.gather(2, rows.view(n, 1, oh, 1).expand(n, c, oh, w))
        return x.gather(3, cols.view(n, 1, 1, ow).expand(n, c, oh, ow))

    def describe(self):
        return {"type": "jitter", "pixels": self.pixels}


class AffineTransform(Transform):
    """A transform expressed as a 2x2 sampling matrix per image (output pixel -> input pixel,
    around the centre)."""

    def matrix(self, u: torch.Tensor) -> torch.Tensor:  # [N, 2, 2]
        raise NotImplementedError

    def __call__(self, x, u):
        return resample(x, self.matrix(u))


class Scale(AffineTransform):
    """Zoom by a random factor in [min, max] (> 1 enlarges), keeping the image size."""

    dims = 1

    def __init__(self, low: float = 0.9, high: float = 1.1):
        self.low, self.high = float(low), float(high)

    def matrix(self, u):
        factor = self.low + u[:, 0] * (self.high - self.low)
        eye = torch.eye(2, device=u.device, dtype=u.dtype)
        return eye[None] / factor[:, None, None]

    def describe(self):
        return {"type": "scale", "min": self.low, "max": self.high}


class Rotate(AffineTransform):
    """Rotate by a random angle in [-degrees, degrees]."""

    dims = 1

    def __init__(self, degrees: float = 10.0):
        self.degrees = float(degrees)

    def matrix(self, u):
        angle = (2.0 * u[:, 0] - 1.0) * math.radians(self.degrees)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # sampling matrix = the inverse rotation
        return torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)

    def describe(self):
        return {"type": "rotate", "degrees": self.degrees}


class _MergedAffine(AffineTransform):
    def __init__(self, parts: Sequence[AffineTransform]):
        self.parts = list(parts)
        self.dims = sum(p.dims for p in self.parts)

    def matrix(self, u):
        out, start = None, 0
        for part in self.parts:
            m = part.matrix(u[:, start : start + part.dims])
            start += part.dims
            # applying T1 then T2 samples the input at A1 @ A2 @ p
            out = m if out is None else out @ m
        return out

    def describe(self):
        return {"merged": [p.describe() for p in self.parts]}


def resample(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of x [N, C, H, W] at `matrix` [N, 2, 2] @ p (pixel coordinates about
    the centre); outside the image is grey."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = matrix[:, 0, 0]
    theta[:, 0, 1] = matrix[:, 0, 1] * (h / w)
    theta[:, 1, 0] = matrix[:, 1, 0] * (w / h)
    theta[:, 1, 1] = matrix[:, 1, 1]
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x - GREY, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + GREY


class Compose(Transform):
    def __init__(self, transforms: Iterable[Transform]):
        self.transforms = list(transforms)
        merged: list[Transform] = []
        run: list[AffineTransform] = []
        for t in [*self.transforms, None]:
            if isinstance(t, AffineTransform):
                run.append(t)
                continue
            if run:
                merged.append(run[0] if len(run) == 1 else _MergedAffine(run))
                run = []
            if t is not None:
                merged.append(t)
        self._steps = merged
        self.dims = sum(t.dims for t in merged)

    def __call__(self, x, u):
        start = 0
        for t in self._steps:
            x = t(x, u[:, start : start + t.dims])
            start += t.dims
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def describe(self) -> list[dict[str, Any]]:
        return [t.describe() for t in self.transforms]


def make_transforms(specs: Sequence[dict[str, Any]]) -> Compose:
    """From specs such as {"type": "pad", "pixels": 12} (see the job's params)."""
    out: list[Transform] = []
    for spec in specs:
        kind = spec["type"]
        if kind == "pad":
            out.append(Pad(spec.get("pixels", 12), spec.get("mode", "constant")))
        elif kind == "jitter":
            out.append(Jitter(spec.get("pixels", 8)))
        elif kind == "scale":
            out.append(Scale(spec.get("min", 0.9), spec.get("max", 1.1)))
        elif kind == "rotate":
            out.append(Rotate(spec.get("degrees", 10.0)))
        else:
            raise ValueError(f"unknown transform {kind!r}")
    return Compose(out)
