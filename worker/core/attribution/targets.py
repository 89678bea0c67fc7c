"""What is explained: a model output, or a hidden neuron, as a module [n, D] -> [n].

Every method here (Captum's and ours) calls one of these; a neuron target is the forward
``f(x) = capture_activation(model, x, layer)[:, unit]``, so the perturbation methods, which
Captum only offers for outputs, explain neurons too (the forward pass stops at the layer).
"""

from __future__ import annotations

import torch
from torch import nn

from worker.core.batching import in_accepted_batches
from worker.core.probe import capture_activation


def _select(values: torch.Tensor, unit: int, what: str) -> torch.Tensor:
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim > 2:  # a feature map: the unit's mean over positions
        values = values.reshape(values.shape[0], values.shape[1], -1).mean(dim=2)
    if not 0 <= unit < values.shape[1]:
        raise IndexError(f"{what} {unit} is out of range: there are {values.shape[1]} (0 to {values.shape[1] - 1})")
    return values[:, unit]


class OutputForward(nn.Module):
    """Output column `index` of the model."""

    def __init__(self, model: nn.Module, index: int = 0):
        super().__init__()
        self.model = model
        self.index = int(index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _select(in_accepted_batches(self.model, x, self.model), self.index, "output")


class NeuronForward(nn.Module):
    """Unit `unit` of layer `layer` (a name as listed by worker.core.probe.inspect_layers)."""

    def __init__(self, model: nn.Module, layer: str, unit: int):
        super().__init__()
        self.model = model
        self.layer = layer
        self.unit = int(unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _select(capture_activation(self.model, x, self.layer), self.unit, f"unit of layer {self.layer!r}")


def target_forward(model: nn.Module, target: dict) -> nn.Module:
    """{"type": "output", "index": i} or {"type": "neuron", "layer": name, "unit": j}."""
    if target.get("type") == "neuron":
        return NeuronForward(model, target["layer"], target["unit"])
    return OutputForward(model, target.get("index") or 0)
