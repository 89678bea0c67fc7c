"""Gradient SHAP (Lundberg & Lee 2017), by Captum: gradients at random points between the input
and baselines drawn from the background, times (input - baseline). Complete in expectation."""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import GradientShap as CaptumGradientShap

from worker.core.attribution.base import Attribution, Groups, captum_gradient_method, group_sum


class GradientShap(Attribution):
    name = "gradient_shap"
    complete = True
    needs_n_samples = True

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return n_samples or 1

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        samples = state["n_samples"]
        columns = captum_gradient_method(CaptumGradientShap, self.forward).attribute(inputs, baselines=baselines, n_samples=samples, stdevs=0.0)
        return group_sum(columns.detach(), groups)
