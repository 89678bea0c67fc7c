"""Integrated gradients (Sundararajan et al. 2017), by Captum; one integral per baseline row."""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients

from worker.core.attribution.base import Attribution, Groups, captum_gradient_method, collapse, expand, group_sum


class IntegratedGradients(Attribution):
    name = "integrated_gradients"
    complete = True
    # Captum's default rule. On the ReLU MLPs here, 100 steps leave a residual under 5 % of the
    # output difference on 99.7 % of rows (the trapezoid rule needs twice the steps).
    integration = "gausslegendre"

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background  # the steps are batched by Captum's internal_batch_size

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        x, b = expand(inputs, baselines)
        method = captum_gradient_method(CaptumIntegratedGradients, self.forward)
        columns = method.attribute(
            x, baselines=b, n_steps=state["n_steps"], method=self.integration,
            internal_batch_size=max(self.batch, x.shape[0]),
        )  # fmt: skip
        return group_sum(collapse(columns.detach(), inputs.shape[0]), groups)
