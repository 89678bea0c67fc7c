"""Feature accentuation's seed image for an activation-maximization job: read from a dataset (by
file name or position) or decoded from the params, and resized to the rendering's size."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from service.kinds.activation_maximization import ActivationMaximizationParams
from worker.context import JobFailed
from worker.datasets import ImageSet, decode_image


@dataclass
class Seed:
    picture: np.ndarray  # uint8 [H, W, 3], as read
    source: dict[str, Any]  # result.json's description: {"dataset", "image", "index"} or {"data": "inline"}

    def tensor(self, size: int, device: str | torch.device) -> torch.Tensor:
        """[1, 3, size, size] in [0, 1]: resized as the model's input would be (bilinear, antialiased)."""
        image = torch.from_numpy(np.ascontiguousarray(self.picture)).permute(2, 0, 1).float().div(255.0)[None]
        if tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return image.clamp(0, 1).to(device)


def load_seed(params: ActivationMaximizationParams, dataset: Callable[[str], ImageSet] | None) -> Seed | None:
    init = params.init
    if init is None:
        return None
    if init.data is not None:
        data = base64.b64decode(init.data.split(",", 1)[-1])
        return Seed(decode_image(data, "init.data"), {"data": "inline", "bytes": len(data)})
    if dataset is None:
        raise JobFailed("invalid-params", "No datasets here", "init.dataset needs a dataset loader")
    images = dataset(init.dataset)
    if init.image is not None:
        try:
            index = images.names.index(init.image)
        except ValueError:
            nearby = ", ".join(images.names[:5])
            raise JobFailed(
                "invalid-params",
                "No such image in the dataset",
                f"init.image {init.image!r} is not in dataset {init.dataset!r} ({len(images)} images: {nearby}, ...)",
            ) from None
    else:
        index = init.index
        if index >= len(images):
            raise JobFailed(
                "invalid-params",
                "init.index is past the dataset's end",
                f"dataset {init.dataset!r} has {len(images)} images (0 to {len(images) - 1})",
            )
    return Seed(images.read([index])[0], {"dataset": init.dataset, "image": images.names[index], "index": index})
