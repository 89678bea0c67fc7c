"""Feature ablation, by Captum: output at the input minus output with one variable (all its
one-hot columns together, via ``feature_mask``) set to the baseline's."""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import FeatureAblation as CaptumFeatureAblation

from worker.core.attribution.base import Attribution, Groups, collapse, expand, feature_mask, group_take


class FeatureAblation(Attribution):
    name = "feature_ablation"

    cpu_batch = 16_384

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background * variables

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        x, b = expand(inputs, baselines)
        mask = feature_mask(groups, inputs.shape[1], inputs.device)
        with torch.no_grad():
            columns = CaptumFeatureAblation(self.forward).attribute(
                x, baselines=b, feature_mask=mask, perturbations_per_eval=len(groups)
            )
        return group_take(collapse(columns, inputs.shape[0]), groups)
