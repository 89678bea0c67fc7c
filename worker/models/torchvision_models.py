"""torchvision classification architectures, with pretrained or seeded random weights.

torchvision is imported only where it is needed: importing it (and the torch._dynamo it pulls in)
takes most of a worker's start, and a worker that never loads a torchvision model never needs it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.model_refs import TORCHVISION_PREFIX, ModelRef


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not in the cache and cannot be downloaded."""


def classification_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _default_weights(architecture: str):
    import torchvision

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


def catalog_records(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every architecture's catalog record. They depend only on the torchvision version, so they
    are kept in `cache_dir` per version: later worker starts read them without torchvision."""
    cache = cache_dir / f"torchvision-{importlib.metadata.version('torchvision')}-catalog.json" if cache_dir else None
    if cache is not None:
        try:
            return json.loads(cache.read_text())
        except (OSError, ValueError):
            pass
    records = [catalog_record(architecture) for architecture in classification_architectures()]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(records))
            partial.replace(cache)  # whole or absent, for the other workers reading it
        except OSError:
            pass  # a read-only data dir: every start lists them again
    return records


def load_torchvision(ref: ModelRef) -> nn.Module:
    import torchvision

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
