"""Shapley value sampling (Castro et al. 2009), by Captum: marginal contributions along random
permutations of the variables (a categorical moves as one, via ``feature_mask``). Each
permutation telescopes, so the attributions add up to the output difference exactly."""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import ShapleyValueSampling as CaptumShapleyValueSampling

from worker.core.attribution.base import Attribution, Groups, collapse, expand, feature_mask, group_take


class ShapleyValueSampling(Attribution):
    name = "shapley_sampling"
    complete = True
    needs_n_samples = True

    cpu_batch = 16_384  # Captum's per-permutation overhead wants bigger batches

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background * variables

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        x, b = expand(inputs, baselines)
        mask = feature_mask(groups, inputs.shape[1], inputs.device)
        per_eval = max(1, min(len(groups), self.batch // max(1, x.shape[0])))
        # Every chunk starts Captum's permutations from the seed: all rows share the same
        # permutations, and a row's result does not depend on the rows explained with it.
        torch.manual_seed(state["seed"])
        with torch.no_grad():
            columns = CaptumShapleyValueSampling(self.forward).attribute(
                x, baselines=b, feature_mask=mask, n_samples=state["n_samples"], perturbations_per_eval=per_eval
            )
        return group_take(collapse(columns, inputs.shape[0]), groups)
