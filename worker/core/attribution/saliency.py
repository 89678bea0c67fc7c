"""Saliency (Simonyan et al. 2014), by Captum: |d output / d column|, summed per variable.
No baseline; not additive (its residual is not a check)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import Saliency as CaptumSaliency

from worker.core.attribution.base import Attribution, Groups, captum_gradient_method, group_sum


class Saliency(Attribution):
    name = "saliency"

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return 1

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # inputs get requires_grad set by Captum
            columns = captum_gradient_method(CaptumSaliency, self.forward).attribute(inputs.clone(), abs=True)
        return group_sum(columns.detach(), groups)
