"""Input x gradient, by Captum: each encoded column times its gradient, summed per variable
(the implicit reference is all zeros in the encoded space; the baseline is not used)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import InputXGradient as CaptumInputXGradient

from worker.core.attribution.base import Attribution, Groups, captum_gradient_method, group_sum


class InputXGradient(Attribution):
    name = "input_x_gradient"

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return 1

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # inputs get requires_grad set by Captum
            columns = captum_gradient_method(CaptumInputXGradient, self.forward).attribute(inputs.clone())
        return group_sum(columns.detach(), groups)
