"""Images in and out: model input tensors from uint8 pictures, PNGs for people
(worker/core/figures.py draws the labelled figures)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def prepare_images(images: Sequence[np.ndarray], contract: dict[str, Any], device: str | torch.device) -> torch.Tensor:
    """uint8 [H, W, 3] pictures -> the model's input: resized to the contract's size (bilinear,
    antialiased), channels as the contract says (grayscale: luminance), normalized by its
    mean/std. Returns float32 [N, C, H, W]."""
    spec = contract["image"]
    height, width = spec["size"]
    channels = spec.get("channels", 3)
    batch = []
    for picture in images:
        tensor = torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1).float().div(255.0)
        if tuple(tensor.shape[1:]) != (height, width):
            tensor = F.interpolate(tensor[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
        batch.append(tensor.clamp(0, 1))
    x = torch.stack(batch).to(device)
    if channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    return normalize(x, spec)


def normalize(x: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    channels = x.shape[1]
    mean = torch.tensor(spec.get("mean") or [0.0] * channels, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.get("std") or [1.0] * channels, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    channels = x.shape[1]
    mean = torch.tensor(spec.get("mean") or [0.0] * channels, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.get("std") or [1.0] * channels, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std + mean


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, C] or [C, H, W] floats in [0, 1] (or uint8) -> uint8 [H, W, 3]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.transpose(array, (1, 2, 0))
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def enlarge(image: np.ndarray, min_side: int) -> np.ndarray:
    """uint8 [H, W, 3] of `image`, repeated by the smallest whole factor that makes its longer
    side at least `min_side` (nearest neighbour: every input pixel stays a sharp square)."""
    picture = to_uint8(image)
    factor = max(1, math.ceil(min_side / max(1, max(picture.shape[:2]))))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else picture


def fit(image: np.ndarray, side: int, factor: float) -> np.ndarray:
    """uint8 [H, W, 3] of `image` scaled by `factor` (nearest when enlarging, area-averaged when
    shrinking), its longer side capped at `side`."""
    picture = to_uint8(image)
    height, width = picture.shape[:2]
    scale = min(factor, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return picture
    if scale >= 1 and float(scale).is_integer():
        return picture.repeat(int(scale), axis=0).repeat(int(scale), axis=1)
    method = Image.NEAREST if scale >= 1 else Image.BOX
    return np.asarray(Image.fromarray(picture).resize(size, method))
