"""torchvision classification architectures, with pretrained or seeded random weights."""

from __future__ import annotations

import os
from typing import Any

import torch
import torchvision
from torch import nn

from service.model_refs import TORCHVISION_PREFIX, ModelRef


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not in the cache and cannot be downloaded."""


def classification_architectures() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _default_weights(architecture: str):
    return torchvision.models.get_model_weights(architecture).DEFAULT


def weights_cache_path(architecture: str) -> str:
    """Where torchvision looks for (and downloads) the default weights of `architecture`."""
    weights = _default_weights(architecture)
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def input_contract(architecture: str) -> tuple[dict[str, Any], list[str] | None]:
    """The input contract (size, mean, std) and labels, from the weights' metadata."""
    weights = _default_weights(architecture)
    transforms = weights.transforms()
    size = getattr(transforms, "crop_size", None) or [224]
    size = list(size) * 2 if len(size) == 1 else list(size)
    contract = {
        "image": {
            "size": size,
            "channels": 3,
            "mean": [float(v) for v in transforms.mean],
            "std": [float(v) for v in transforms.std],
        }
    }
    return contract, list(weights.meta.get("categories") or []) or None


def catalog_record(architecture: str) -> dict[str, Any]:
    contract, labels = input_contract(architecture)
    return {
        "id": f"{TORCHVISION_PREFIX}{architecture}",
        "name": architecture,
        "kind": "image",
        "source": "torchvision",
        "status": "available",
        "description": f"torchvision {architecture}; name it as torchvision/{architecture}"
        "?weights=default (pretrained, downloaded once into the torch hub cache) or "
        "?weights=random&seed=N",
        "input": contract,
        "labels": labels,
        "layers": None,
    }


def load_torchvision(ref: ModelRef) -> nn.Module:
    architecture = ref.architecture
    if architecture not in classification_architectures():
        raise ValueError(f"unknown torchvision architecture {architecture!r}")
    if ref.weights == "random":
        # The generator state decides the initialization: same seed, same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ref.seed)
            return torchvision.models.get_model(architecture, weights=None).eval()
    weights = _default_weights(architecture)
    try:
        return torchvision.models.get_model(architecture, weights=weights).eval()
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise WeightsUnavailable(
            f"cannot load the pretrained weights of {architecture}: {exc}. Where the service has "
            f"no network, put {os.path.basename(weights.url)} at {weights_cache_path(architecture)} "
            f"(downloaded from {weights.url})"
        ) from exc
