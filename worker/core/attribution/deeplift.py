"""DeepLift, rescale rule (Shrikumar et al. 2017), by Captum; against a background it is
Captum's DeepLiftShap: the mean over the background rows."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import DeepLift as CaptumDeepLift

from worker.core.attribution.base import Attribution, Groups, captum_gradient_method, collapse, expand, group_sum


class DeepLift(Attribution):
    name = "deeplift"
    complete = True  # summation-to-delta, for the nonlinearities DeepLift knows (nn.ReLU, ...)

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return 2 * background

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        x, b = expand(inputs, baselines)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Captum's notes about the hooks it sets
            columns = captum_gradient_method(CaptumDeepLift, self.forward).attribute(x.clone(), baselines=b)
        return group_sum(collapse(columns.detach(), inputs.shape[0]), groups)
