"""The built-in demo image model `shapes-cnn` and its validation dataset `shapes-val`.

Synthetic 64x64 RGB images of ten classes, each a distinctive combination of shape, colour,
stripe orientation or texture, so that a small convnet's early channels learn colours and
oriented edges and its later channels learn shapes, and a class visualization is recognizable
by eye. Shape classes have a nominal colour each; texture classes have random colours.

Variation: position, scale and rotation of the shape, a low-saturation background with a tint,
a gentle gradient and pixel noise; colour jitter on every colour; texture colours are random
(a dark and a light colour), so a texture class is defined by its pattern and orientation only.
No distractors: each image holds exactly one shape or one texture.

Pure numpy/PyTorch: no Redis, no HTTP. Train with `python -m worker.models.train_shapes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_INPUT",
    "SHAPES_MEAN",
    "SHAPES_REPORT",
    "SHAPES_STD",
    "SHAPES_TRAIN_SEED",
    "SHAPES_VAL_COUNT",
    "SHAPES_VAL_SEED",
    "SHAPES_WEIGHTS",
    "ShapesCNN",
    "generate_shapes",
    "load_shapes_cnn",
    "preprocess",
    "shapes_val",
]

SHAPES_CLASSES: list[str] = [
    "red circle",
    "green square",
    "blue triangle",
    "yellow cross",
    "purple ring",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "polka dots",
]

SHAPES_SIZE = 64
SHAPES_TRAIN_SEED = 20240601
SHAPES_VAL_SEED = 7
SHAPES_VAL_COUNT = 400

# Per-channel mean and std of training images scaled to [0, 1] (computed by
# `python -m worker.models.train_shapes --stats` over 10000 images from SHAPES_TRAIN_SEED).
SHAPES_MEAN: list[float] = [0.4977, 0.4848, 0.4857]
SHAPES_STD: list[float] = [0.2727, 0.2713, 0.2735]

SHAPES_INPUT = {
    "image": {"size": [SHAPES_SIZE, SHAPES_SIZE], "channels": 3, "mean": SHAPES_MEAN, "std": SHAPES_STD}
}

SHAPES_WEIGHTS = Path(__file__).resolve().parent / "weights" / "shapes-cnn.safetensors"
SHAPES_REPORT = SHAPES_WEIGHTS.with_suffix(".json")

# nominal RGB of the coloured shape classes (jittered per image)
_COLOURS = {
    "red": (220, 35, 35),
    "green": (35, 175, 55),
    "blue": (40, 70, 225),
    "yellow": (240, 215, 35),
    "purple": (150, 45, 195),
}

_CHUNK = 256  # images drawn at once (bounds the float32 scratch memory to a few tens of MB)


# ---------------------------------------------------------------------------------------------
# drawing helpers: everything is [n, S, S] float32 arrays, distances in pixels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[None, None, :], coords[None, :, None]  # x varies along W, y along H


def _u(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, size=(n, 1, 1)).astype(np.float32)


def _alpha(signed_distance: np.ndarray) -> np.ndarray:
    """Coverage of a shape from its signed distance (negative inside), antialiased over ~1 px."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _background(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Low-saturation background: grey level, a tint, and a gentle linear gradient. [n,S,S,3]"""
    x, y = _grid(size)
    grey = _u(rng, n, 30, 215)
    tint = rng.uniform(-22, 22, size=(n, 1, 1, 3)).astype(np.float32)
    angle = _u(rng, n, 0, 2 * np.pi)
    amplitude = _u(rng, n, 0, 30)
    ramp = ((x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)) / size * amplitude
    return (grey + ramp)[..., None] + tint


def _jittered(rng: np.random.Generator, n: int, name: str) -> np.ndarray:
    base = np.asarray(_COLOURS[name], dtype=np.float32)
    colour = base + rng.uniform(-22, 22, size=(n, 3)).astype(np.float32)
    colour *= rng.uniform(0.85, 1.08, size=(n, 1)).astype(np.float32)
    return np.clip(colour, 0, 255)[:, None, None, :]


def _texture_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A dark and a light colour (random hues), in random order: always strong contrast."""
    dark = rng.uniform(0, 105, size=(n, 3)).astype(np.float32)
    light = rng.uniform(155, 255, size=(n, 3)).astype(np.float32)
    swap = rng.random(n) < 0.5
    first = np.where(swap[:, None], light, dark)
    second = np.where(swap[:, None], dark, light)
    return first[:, None, None, :], second[:, None, None, :]


def _placed(rng: np.random.Generator, n: int, size: int, extent: np.ndarray, x, y, turn: float):
    """Random centre keeping `extent` (bounding radius, px) inside; coords rotated by [0, turn)."""
    margin = extent + 1.0
    cx = margin + (size - 2 * margin) * _u(rng, n, 0, 1)
    cy = margin + (size - 2 * margin) * _u(rng, n, 0, 1)
    theta = _u(rng, n, 0, turn)
    dx, dy = x - cx, y - cy
    c, s = np.cos(theta), np.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c


def _shape_alpha(rng: np.random.Generator, kind: str, n: int, size: int) -> np.ndarray:
    f = size / 64.0
    x, y = _grid(size)
    if kind == "circle":
        radius = _u(rng, n, 10, 22) * f
        u, v = _placed(rng, n, size, radius, x, y, 0.0)
        return _alpha(np.sqrt(u * u + v * v) - radius)
    if kind == "ring":
        outer = _u(rng, n, 13, 25) * f
        inner = outer * _u(rng, n, 0.45, 0.62)
        u, v = _placed(rng, n, size, outer, x, y, 0.0)
        r = np.sqrt(u * u + v * v)
        return _alpha(np.maximum(r - outer, inner - r))
    if kind == "square":
        half = _u(rng, n, 8, 17) * f
        u, v = _placed(rng, n, size, half * np.float32(np.sqrt(2)), x, y, np.pi / 2)
        return _alpha(np.maximum(np.abs(u), np.abs(v)) - half)
    if kind == "triangle":
        circumradius = _u(rng, n, 13, 26) * f
        u, v = _placed(rng, n, size, circumradius, x, y, 2 * np.pi / 3)
        apothem = circumradius / 2
        sides = [
            u * np.float32(np.cos(a)) + v * np.float32(np.sin(a))
            for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)
        ]
        return _alpha(np.maximum(np.maximum(sides[0], sides[1]), sides[2]) - apothem)
    if kind == "cross":
        arm = _u(rng, n, 12, 25) * f
        width = arm * _u(rng, n, 0.26, 0.36)
        u, v = _placed(rng, n, size, np.sqrt(arm * arm + width * width), x, y, np.pi / 2)
        au, av = np.abs(u), np.abs(v)
        bar1 = np.maximum(au - arm, av - width)
        bar2 = np.maximum(au - width, av - arm)
        return _alpha(np.minimum(bar1, bar2))
    raise ValueError(kind)


def _texture_alpha(rng: np.random.Generator, kind: str, n: int, size: int) -> np.ndarray:
    f = size / 64.0
    x, y = _grid(size)
    jitter = np.deg2rad(_u(rng, n, -10, 10))
    if kind == "polka":
        period = _u(rng, n, 10, 16) * f
        radius = period * _u(rng, n, 0.24, 0.36)
        u = x * np.cos(jitter) + y * np.sin(jitter) + _u(rng, n, 0, 100)
        v = -x * np.sin(jitter) + y * np.cos(jitter) + _u(rng, n, 0, 100)
        du = (u / period + 0.5) % 1.0 - 0.5
        dv = (v / period + 0.5) % 1.0 - 0.5
        return _alpha(np.sqrt(du * du + dv * dv) * period - radius)
    if kind == "checkerboard":
        cell = _u(rng, n, 6, 12) * f
        u = x * np.cos(jitter) + y * np.sin(jitter) + _u(rng, n, 0, 100)
        v = -x * np.sin(jitter) + y * np.cos(jitter) + _u(rng, n, 0, 100)
        k = np.float32(np.pi) / cell
        su, sv = np.sin(u * k), np.sin(v * k)
        distance = np.minimum(np.abs(su), np.abs(sv)) / k  # ~ distance to the nearest cell edge
        return np.clip(0.5 + np.sign(su * sv) * distance, 0.0, 1.0)
    # stripes: `normal` is the direction across the stripes
    if kind == "horizontal":
        normal = np.float32(np.pi / 2) + jitter
    elif kind == "vertical":
        normal = jitter
    elif kind == "diagonal":
        which = np.where(rng.random((n, 1, 1)) < 0.5, np.pi / 4, 3 * np.pi / 4).astype(np.float32)
        normal = which + jitter * np.float32(0.8)
    else:
        raise ValueError(kind)
    period = _u(rng, n, 8, 16) * f
    p = x * np.cos(normal) + y * np.sin(normal) + _u(rng, n, 0, 100)
    k = np.float32(2 * np.pi) / period
    return np.clip(0.5 + np.sin(p * k) / k, 0.0, 1.0)


def _draw(rng: np.random.Generator, label: int, n: int, size: int) -> np.ndarray:
    """n images of one class, float32 [n,S,S,3] in 0..255 before noise."""
    name = SHAPES_CLASSES[label]
    words = name.split()
    if words[-1] in ("stripes", "checkerboard", "dots"):
        kind = words[0]
        first, second = _texture_colours(rng, n)
        alpha = _texture_alpha(rng, kind, n, size)[..., None]
        return first * (1 - alpha) + second * alpha
    colour_name, kind = words
    background = _background(rng, n, size)
    colour = _jittered(rng, n, colour_name)
    alpha = _shape_alpha(rng, kind, n, size)[..., None]
    return background * (1 - alpha) + colour * alpha


def generate_shapes(count: int, seed: int, size: int = SHAPES_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`count` images, deterministic for `seed`: uint8 [N, size, size, 3] (RGB), int64 labels [N].

    Classes are balanced: each class gets count // K or count // K + 1 images (exactly count / K
    when K divides count), in a seed-determined shuffled order.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = np.random.default_rng(seed)
    k = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(count, dtype=np.int64) % k)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for label in range(k):
        where = np.flatnonzero(labels == label)
        for start in range(0, len(where), _CHUNK):
            index = where[start : start + _CHUNK]
            n = len(index)
            drawn = _draw(rng, label, n, size)
            sigma = rng.uniform(2, 10, size=(n, 1, 1, 1)).astype(np.float32)
            drawn += rng.standard_normal((n, size, size, 3), dtype=np.float32) * sigma
            images[index] = np.clip(np.rint(drawn), 0, 255).astype(np.uint8)
    return images, labels


def shapes_val() -> tuple[np.ndarray, np.ndarray]:
    """The `shapes-val` split: SHAPES_VAL_COUNT images from SHAPES_VAL_SEED."""
    return generate_shapes(SHAPES_VAL_COUNT, SHAPES_VAL_SEED)


# ---------------------------------------------------------------------------------------------
# the model


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] (or one [H,W,3]) RGB -> normalized float32 [N,3,H,W] (SHAPES_MEAN/STD)."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected [N,H,W,3] images, got shape {array.shape}")
    x = torch.from_numpy(np.ascontiguousarray(array)).to(torch.float32).div_(255.0)
    x = x.permute(0, 3, 1, 2)
    mean = torch.tensor(SHAPES_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(SHAPES_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


class ShapesCNN(nn.Module):
    """Small VGG-like net: conv3x3/ReLU/max-pool blocks, global average pool, two linears.

    No batch norm, no dropout, no in-place ReLU: the deconvnet is exact and the model is
    deterministic. Input: normalized float [N,3,64,64] (see `preprocess`); output: logits [N,K].

    features.0  Conv2d(3, 16)    64x64   features.1  ReLU   features.2  MaxPool2d -> 32x32
    features.3  Conv2d(16, 32)   32x32   features.4  ReLU
    features.5  Conv2d(32, 32)   32x32   features.6  ReLU   features.7  MaxPool2d -> 16x16
    features.8  Conv2d(32, 64)   16x16   features.9  ReLU
    features.10 Conv2d(64, 64)   16x16   features.11 ReLU   features.12 MaxPool2d -> 8x8
    pool        AdaptiveAvgPool2d(1) -> 64
    classifier.0 Linear(64, 64)  classifier.1 ReLU  classifier.2 Linear(64, K)
    """

    def __init__(self, num_classes: int = len(SHAPES_CLASSES)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


def load_shapes_cnn(path: str | Path = SHAPES_WEIGHTS, device: str | torch.device = "cpu") -> ShapesCNN:
    """The shipped `shapes-cnn` (strict state-dict load), in eval mode."""
    from safetensors.torch import load_file

    model = ShapesCNN()
    model.load_state_dict(load_file(str(path), device=str(device)), strict=True)
    return model.to(device).eval()
