"""The artifacts of activation maximization's two newer modes.

- Feature accentuation (`init`): seed.png (the seed as rendered), difference-NNN.png (what the
  accentuation changed: 0.5 grey is no change, brighter / darker is more / less of a colour,
  scaled by the image's own largest change so that faint edits stay visible; the scale is in
  result.json) and accentuation.png (seed | accentuation | difference, one row per image).
- MACO (`parameterization: maco`): alpha.npy (the transparency maps [N, H, W] in [0, 1]) and
  image-NNN-alpha.png, each image as RGBA with its map as alpha: what did not matter to the
  unit fades out (Fel et al. 2023).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from worker.artifacts import npy_artifact, png_artifact
from worker.context import ArtifactBlob
from worker.core.figures import image_grid_png
from worker.core.imaging import png_bytes, to_uint8
from worker.kinds.activation_maximization.compute import Rendering
from worker.kinds.activation_maximization.report import RenderedImage


def accentuation_artifacts(rendering: Rendering, images: list[RenderedImage], model: str) -> list[ArtifactBlob]:
    seed = rendering.setup.seed_image.numpy()[0]
    shown, _ = rendering.differences()
    numbers = rendering.accentuation
    rows, captions = [], []
    for image, picture, difference in zip(images, rendering.images, shown):
        rows.append([seed, picture, difference])
        before = numbers["seed_activation"][image.index]
        after = "n/a" if image.activation is None else f"{image.activation:.3g}"
        captions.append(
            [f"seed: {before:.3g}", f"unit {image.unit}: {after}", f"distance {numbers['distance'][image.index]:.2g}"]
        )
    source = numbers["seed"].get("image") or "an inline image"
    figure = image_grid_png(
        rows,
        title=f"{model} · {rendering.setup.resolved['layer']} · feature accentuation of {source}",
        notes=[
            "Left: the seed. Middle: the seed changed to excite the unit more while the activations of "
            f"{numbers['layer']!r} stay close to the seed's. Right: the change (grey: none; scaled per image).",
            "Under each: the unit's activation on the seed and on the accentuation, and their relative distance.",
        ],
        column_labels=["seed", "accentuation", "difference"],
        captions=captions,
        min_cell=128,
        max_cell=192,
    )
    return [
        png_artifact("seed.png", png_bytes(seed)),
        png_artifact("accentuation.png", figure),
        *[png_artifact(f"difference-{image.index:03d}.png", png_bytes(d)) for image, d in zip(images, shown)],
    ]


def transparency_artifacts(rendering: Rendering, images: list[RenderedImage]) -> list[ArtifactBlob]:
    alpha = rendering.transparency
    out = [npy_artifact("alpha.npy", alpha)]
    for image, picture, mask in zip(images, rendering.images, alpha):
        rgba = np.concatenate([to_uint8(picture), (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None]], -1)
        buffer = io.BytesIO()
        Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
        out.append(png_artifact(image.png.replace(".png", "-alpha.png"), buffer.getvalue()))
    return out
