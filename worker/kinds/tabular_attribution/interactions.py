"""The interaction methods of a tabular attribution job: pairwise Shapley interactions (k-SII,
STII, FSII; exact up to 12 variables, sampled above or under a smaller budget) and integrated
Hessians, run by worker/core/attribution, with the model evaluations they make counted.

The count is what the model really did, read off the target's forward: rows through it, and
rows of every gradient taken with respect to its input (a tensor hook on the input fires once
per gradient pass, so integrated Hessians' first gradient and each Hessian-vector product count
separately). result.json states it beside the cost model's estimate (service/kinds/tabular_cost.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from service.kinds.tabular_cost import interaction_coalitions, interactions_sampled, resolved_n_steps
from service.kinds.tabular_params import TabularAttributionParams
from worker.core.attribution import Explanation
from worker.core.attribution.integrated_hessians import integrated_hessians
from worker.core.attribution.interaction_result import InteractionResult
from worker.core.attribution.interactions import shapley_interactions


class Tally:
    """Model rows evaluated: forward rows, and rows of gradients taken with respect to the input.
    A copy of the counted module (integrated Hessians' softplus copy) counts into the same tally."""

    def __init__(self) -> None:
        self.forward_rows = 0
        self.gradient_rows = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Tally:
        return self


class CountingForward(nn.Module):
    """`inner` (a target's forward, [n, D] -> [n]), counting what passes through it into `tally`."""

    def __init__(self, inner: nn.Module, tally: Tally):
        super().__init__()
        self.inner = inner
        self.tally = tally

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tally.forward_rows += x.shape[0]
        if x.requires_grad:
            x.register_hook(self._count_gradient)
        return self.inner(x)

    def _count_gradient(self, gradient: torch.Tensor) -> None:
        self.tally.gradient_rows += gradient.shape[0]


@dataclass
class Interactions:
    result: InteractionResult
    explanation: Explanation  # per variable: main effect plus half of each of its pairs
    forward_rows: int
    gradient_rows: int


def interact(
    forward: nn.Module,
    params: TabularAttributionParams,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    groups: Sequence[Sequence[int]],
    progress: Callable[[float], None],
) -> Interactions:
    """The method's InteractionResult for every row of `inputs` against `baselines`."""
    tally = Tally()
    counted = CountingForward(forward, tally)
    variables = len(groups)
    if params.method == "shapley_interactions":
        result = shapley_interactions(
            counted, inputs, baselines, groups,
            index=params.index or "k-SII",
            budget=interaction_coalitions(variables, params.n_samples),
            sampled=interactions_sampled(variables, params.n_samples),
            seed=params.seed, progress=progress,
        )  # fmt: skip
    else:
        steps = resolved_n_steps(params.method, params.n_steps)
        result = integrated_hessians(counted, inputs, baselines, groups, n_steps=steps, progress=progress)
    return Interactions(result, per_variable(result), tally.forward_rows, tally.gradient_rows)


def per_variable(result: InteractionResult) -> Explanation:
    """Each variable's main effect plus half of each of its pairs: they add up to the same
    total as the main effects and pairs (each pair split evenly between its two variables).
    For k-SII these are the Shapley values; for integrated Hessians, integrated gradients
    (Janizek et al.: the rows of the interaction matrix add up to them)."""
    totals = result.main_effects + 0.5 * result.interactions.sum(axis=2)
    return Explanation(
        attributions=np.asarray(totals, dtype=np.float64),
        outputs=result.outputs,
        baseline_outputs=result.baseline_outputs,
        residuals=result.residuals,
        complete=result.complete,
    )
