"""Exact Shapley values over all coalitions of the variables (Captum has no exact method).

    phi_i = sum over S not containing i of |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))
    v(S)  = mean over the background rows b of f(x on the variables of S, b elsewhere)

(the interventional value function of SHAP; with one baseline row, B = 1). A categorical is
one player: its one-hot columns enter a coalition together. All 2^M coalitions are evaluated,
so the cost is 2^M x B model rows per explained row: refused above `max_variables` when the
caller sets one (the job kind does: its limit is the service's).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from worker.core.attribution.base import Attribution, Groups, coalition_values, column_masks


def all_coalitions(variables: int) -> torch.Tensor:
    """[2^M, M] bool: row s holds the bits of s (variable j is in coalition s iff bit j is set)."""
    codes = torch.arange(2**variables, dtype=torch.long)
    return (codes[:, None] >> torch.arange(variables)) & 1 == 1


def shapley_from_values(values: torch.Tensor, variables: int) -> torch.Tensor:
    """[N, 2^M] coalition values (indexed by bit code) -> [N, M] Shapley values (float64)."""
    codes = torch.arange(2**variables, dtype=torch.long)
    sizes = ((codes[:, None] >> torch.arange(variables)) & 1).sum(dim=1)
    weights = torch.tensor(
        [math.factorial(s) * math.factorial(variables - s - 1) / math.factorial(variables) if s < variables else 0.0
         for s in range(variables + 1)],
        dtype=torch.float64,
    )  # fmt: skip
    values = values.double()
    phi = []
    for j in range(variables):
        without = codes[(codes >> j) & 1 == 0]
        phi.append((values[:, without | (1 << j)] - values[:, without]) @ weights[sizes[without]])
    return torch.stack(phi, dim=1)


class ExactShapley(Attribution):
    name = "shapley"
    complete = True

    def __init__(self, forward, *, batch: int | None = None, max_variables: int | None = None):
        super().__init__(forward, batch=batch)
        self.max_variables = max_variables

    def setup(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, **options: Any) -> Any:
        if self.max_variables is not None and len(groups) > self.max_variables:
            raise ValueError(
                f"exact Shapley values need all 2^{len(groups)} coalitions; the limit is {self.max_variables} variables"
            )
        return column_masks(all_coalitions(len(groups)), groups, inputs.shape[1])

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        values = coalition_values(self.forward, inputs, baselines, state, self.batch)
        return shapley_from_values(values, len(groups))
