"""Images in and out: model input tensors from uint8 pictures, PNGs and grids for people."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw


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


def grid_png(
    cells: Sequence[Sequence[np.ndarray | None]],
    *,
    cell_size: int = 96,
    padding: int = 4,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    label_width: int = 0,
) -> bytes:
    """A grid of images (rows of cells; None leaves a cell empty), each scaled to fit
    `cell_size`, with optional row labels on the left and column labels on top."""
    rows = len(cells)
    columns = max((len(r) for r in cells), default=0)
    top = 14 if column_labels else 0
    left = label_width if row_labels else 0
    width = left + columns * (cell_size + padding) + padding
    height = top + rows * (cell_size + padding) + padding
    canvas = Image.new("RGB", (max(width, 1), max(height, 1)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(cells):
        y = top + padding + r * (cell_size + padding)
        if row_labels:
            draw.text((2, y + cell_size // 2 - 5), str(row_labels[r])[: max(1, label_width // 6)], fill=(0, 0, 0))
        for c, cell in enumerate(row):
            if cell is None:
                continue
            picture = Image.fromarray(to_uint8(cell))
            scale = cell_size / max(picture.size)
            size = (max(1, round(picture.size[0] * scale)), max(1, round(picture.size[1] * scale)))
            picture = picture.resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
            x = left + padding + c * (cell_size + padding)
            canvas.paste(picture, (x, y))
    if column_labels:
        for c, label in enumerate(column_labels):
            x = left + padding + c * (cell_size + padding)
            draw.text((x, 1), str(label)[: cell_size // 6], fill=(0, 0, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
