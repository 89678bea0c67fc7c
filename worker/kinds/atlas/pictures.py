"""An atlas's pictures, composed with numpy and Pillow (hundreds of units: no plotting library
on this path; the numbers and words are in atlas.json and on the web page).

- a unit's exemplar strip: top row the projections, below them the patches they came from, a
  third row of bottom-exemplar patches when asked for; every cell TILE px square;
- sprite sheets: one tile per unit in the atlas's unit order, COLUMNS wide (atlas.json says
  where each unit is).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from worker.core.imaging import fit, png_bytes, to_uint8

TILE = 64
GAP = 2
BACKGROUND = 255


def tile(picture: np.ndarray, side: int = TILE) -> np.ndarray:
    """uint8 [side, side, 3]: `picture` ([H, W, 3], floats in [0, 1] or uint8) fitted and
    centred on white."""
    image = to_uint8(picture)
    fitted = fit(image, side, factor=side / max(1, max(image.shape[:2])))
    out = np.full((side, side, 3), BACKGROUND, np.uint8)
    y, x = (side - fitted.shape[0]) // 2, (side - fitted.shape[1]) // 2
    out[y : y + fitted.shape[0], x : x + fitted.shape[1]] = fitted
    return out


def hwc(picture: np.ndarray) -> np.ndarray:
    """[C, H, W] -> [H, W, C] (explicit: a 3 x 3 patch is ambiguous to guess)."""
    return np.ascontiguousarray(picture.transpose(1, 2, 0))


def exemplar_strip(projections: list[np.ndarray], patches: list[np.ndarray], bottom: list[np.ndarray]) -> bytes:
    """Pictures in [C, H, W]."""
    rows = [[tile(hwc(p)) for p in row] for row in (projections, patches, bottom) if row]
    if not rows:
        return png_bytes(np.full((TILE, TILE, 3), BACKGROUND, np.uint8))
    return png_bytes(_grid(rows, max(len(r) for r in rows)))


def sprite_sheet(tiles: list[np.ndarray | None], columns: int) -> bytes:
    """One tile per unit (None: a blank one), row by row."""
    blank = np.full((TILE, TILE, 3), 235, np.uint8)
    cells = [t if t is not None else blank for t in tiles]
    rows = [cells[start : start + columns] for start in range(0, len(cells), columns)]
    return png_bytes(_grid(rows, columns))


def sheet_columns(units: int) -> int:
    return max(1, min(32, math.ceil(math.sqrt(units))))


def tile_from_png(data: bytes) -> np.ndarray:
    return tile(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def _grid(rows: list[list[np.ndarray]], columns: int) -> np.ndarray:
    height = len(rows) * TILE + (len(rows) - 1) * GAP
    width = columns * TILE + (columns - 1) * GAP
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = r * (TILE + GAP), c * (TILE + GAP)
            out[y : y + TILE, x : x + TILE] = cell
    return out
