"""Scanning images through a model: one forward per batch, every requested layer indexed.

A scan of several layers costs one truncated forward pass per batch (to the deepest of them;
worker/core/probe.py's `capture_activations`), so indexing layers together is nearly free
compared with indexing them one by one. The images arrive already decoded and prepared by the
model's input contract, from any iterable (a list, a generator, a torch DataLoader whose worker
processes decode the next batches while this one runs); nothing here holds more than a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch import nn

from worker.core.index.stats import DEFAULT_TOP_K, LayerStats
from worker.core.probe import capture_activations, parse_layer_name

# Layer types whose outputs are never negative: their bottom-k would be images tied at 0.
NON_NEGATIVE_TYPES = {"ReLU", "ReLU6", "Sigmoid", "Softplus", "Hardsigmoid", "Softmax"}
NON_NEGATIVE_FUNCTIONS = {"relu", "relu6", "sigmoid"}

Batch = tuple[torch.Tensor, object, object]  # images [N, ...], global indices [N], labels [N] or None


def can_be_negative(model: nn.Module, layer: str) -> bool:
    """False where the layer's type guarantees outputs >= 0 (ReLU, sigmoid, ...), as far as its
    type tells: a max-pool after a ReLU is not negative either, but is treated as if it could."""
    module_name, function, _ = parse_layer_name(layer)
    if function is not None:
        return function not in NON_NEGATIVE_FUNCTIONS
    module = dict(model.named_modules()).get(module_name)
    if module is None:
        raise KeyError(f"no module {module_name!r} in the model")
    type_name = getattr(module, "glassbox_layer_type", None) or type(module).__name__
    return type_name not in NON_NEGATIVE_TYPES


@torch.no_grad()
def scan(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Sequence[str],
    device: torch.device | str,
    check: Callable[[], None] | None = None,
    k: int = DEFAULT_TOP_K,
    bottom: Literal["auto", "always", "never"] = "auto",
) -> dict[str, LayerStats]:
    """The statistics of every layer in `layers` over every batch of `batches`.

    `model` must already be on `device` (in eval mode: the caller's model cache owns it);
    each batch's images are moved there. `batches` yields (images, global image indices,
    labels or None). `check()` runs after each batch: a cooperative cancel raises from it.
    `bottom`: keep the bottom-k where the layer can be negative ("auto", by its type), for
    every layer, or for none."""
    names = list(dict.fromkeys(layers))
    if not names:
        raise ValueError("no layers to scan")
    device = torch.device(device)
    stats = {name: LayerStats(k, bottom_k=_bottom_k(model, name, k, bottom)) for name in names}
    for images, indices, labels in batches:
        outputs = capture_activations(model, images.to(device, non_blocking=True), names)
        for name in names:
            stats[name].update(outputs[name], indices, labels)
        del outputs
        if check is not None:
            check()
    return stats


def _bottom_k(model: nn.Module, layer: str, k: int, bottom: str) -> int:
    if bottom == "always":
        return k
    if bottom == "never":
        return 0
    if bottom != "auto":
        raise ValueError(f"bottom must be 'auto', 'always' or 'never', got {bottom!r}")
    return k if can_be_negative(model, layer) else 0
