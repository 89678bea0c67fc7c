"""Attribution for tabular models: which variables drive an output or a hidden neuron.

One algorithm per module, all with the same call shape (see base.py). Captum's implementations
are used where Captum has the algorithm (integrated gradients, DeepLift, gradient SHAP,
saliency, input x gradient, feature ablation, Shapley value sampling); written here: exact
Shapley values over all coalitions (shapley.py), KernelSHAP batched over rows (kernel_shap.py),
neuron targets for every method (targets.py), and the grouping of one-hot columns into
variables (base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.core.attribution.base import Attribution, Groups, forward_in_batches, seeded
from worker.core.attribution.deeplift import DeepLift
from worker.core.attribution.feature_ablation import FeatureAblation
from worker.core.attribution.gradient_shap import GradientShap
from worker.core.attribution.input_x_gradient import InputXGradient
from worker.core.attribution.integrated_gradients import IntegratedGradients
from worker.core.attribution.kernel_shap import KernelShap
from worker.core.attribution.saliency import Saliency
from worker.core.attribution.shapley import ExactShapley
from worker.core.attribution.shapley_sampling import ShapleyValueSampling
from worker.core.attribution.targets import NeuronForward, OutputForward, target_forward

METHODS: dict[str, type[Attribution]] = {
    cls.name: cls
    for cls in (
        IntegratedGradients,
        DeepLift,
        GradientShap,
        Saliency,
        InputXGradient,
        FeatureAblation,
        ShapleyValueSampling,
        KernelShap,
        ExactShapley,
    )
}


@dataclass
class Explanation:
    attributions: np.ndarray  # [N, V] float64, per variable
    outputs: np.ndarray  # [N] forward(x)
    baseline_outputs: np.ndarray  # [N] mean forward(b) over the baseline rows
    residuals: np.ndarray  # [N] sum of attributions - (output - baseline output)
    complete: bool  # whether the method claims sum = output difference


def explain(
    forward: nn.Module,
    method: str,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    groups: Groups,
    *,
    max_variables: int | None = None,
    **options: Any,
) -> Explanation:
    """Run `method` (with Attribution.attribute's `options`: n_steps, n_samples, seed, progress,
    work_per_row) and add the outputs, the reference output and the completeness residual.
    `max_variables` bounds exact Shapley's enumeration."""
    algorithm = ExactShapley(forward, max_variables=max_variables) if method == "shapley" else METHODS[method](forward)
    phi = algorithm.attribute(inputs, baselines, groups, **options).numpy()
    outputs = forward_in_batches(forward, inputs).double().cpu().numpy()
    reference = float(forward_in_batches(forward, baselines.to(inputs.device, inputs.dtype)).double().mean())
    baseline_outputs = np.full_like(outputs, reference)
    residuals = phi.sum(axis=1) - (outputs - baseline_outputs)
    return Explanation(phi, outputs, baseline_outputs, residuals, algorithm.complete)


__all__ = [
    "METHODS",
    "Attribution",
    "Explanation",
    "NeuronForward",
    "OutputForward",
    "forward_in_batches",
    "explain",
    "seeded",
    "target_forward",
]
