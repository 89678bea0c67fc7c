"""What both interaction methods return, and the rankings read off it.

Convention (the same for Shapley interactions and integrated Hessians): per explained row, a
main effect per variable and a value per unordered pair, stored as a symmetric [V, V] matrix
with a zero diagonal, such that, for an efficient index,

    sum_i main_i + sum_{i<j} pair_ij = f(x) - E_b f(b)

(the pair counted once). `residual` is the left side minus the right side, with f(x) and
E_b f(b) evaluated separately from the method's own work, so it checks the method and not only
its bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from worker.core.attribution.base import forward_in_batches


@dataclass(frozen=True)
class RowInteractions:
    main_effects: np.ndarray  # [V]
    interactions: np.ndarray  # [V, V], symmetric, zero diagonal
    residual: float


@dataclass
class InteractionResult:
    method: str  # "shapley_interactions" or "integrated_hessians"
    index: str  # "k-SII", "STII", "FSII" or "integrated_hessians"
    main_effects: np.ndarray  # [N, V] float64
    interactions: np.ndarray  # [N, V, V] float64, symmetric, zero diagonal
    outputs: np.ndarray  # [N] f(x) of the function explained
    baseline_outputs: np.ndarray  # [N] mean f(b) over the baseline rows
    residuals: np.ndarray  # [N] sum of main effects and pairs - (outputs - baseline_outputs)
    exact: bool  # computed exactly (Shapley indices), not sampled or integrated numerically
    complete: bool  # the index claims the efficiency sum above
    # Sampled Shapley interactions only: one standard error per value, same shapes as the values.
    main_errors: np.ndarray | None = None
    interaction_errors: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)  # how it was computed (JSON-able)

    def __len__(self) -> int:
        return int(self.main_effects.shape[0])

    def row(self, i: int) -> RowInteractions:
        return RowInteractions(self.main_effects[i], self.interactions[i], float(self.residuals[i]))


def pair_indices(variables: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) of every unordered pair i < j, in itertools.combinations order."""
    first, second = np.triu_indices(variables, k=1)
    return first, second


def pairs_to_matrix(pairs: torch.Tensor | np.ndarray, variables: int) -> np.ndarray:
    """[N, P] pair values (pair_indices order) -> [N, V, V] symmetric, zero diagonal."""
    pairs = np.asarray(pairs, dtype=np.float64)
    first, second = pair_indices(variables)
    matrix = np.zeros((pairs.shape[0], variables, variables))
    matrix[:, first, second] = pairs
    matrix[:, second, first] = pairs
    return matrix


def efficiency_sum(main_effects: np.ndarray, interactions: np.ndarray) -> np.ndarray:
    """[N]: sum of the main effects plus each unordered pair once."""
    return main_effects.sum(axis=1) + np.triu(interactions, k=1).sum(axis=(1, 2))


def finish(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    main_effects: np.ndarray,
    interactions: np.ndarray,
    **fields: Any,
) -> InteractionResult:
    """The result, with f(x), E_b f(b) and the efficiency residual evaluated on `forward`."""
    outputs = forward_in_batches(forward, inputs).double().cpu().numpy()
    reference = float(forward_in_batches(forward, baselines.to(inputs.device, inputs.dtype)).double().mean())
    baseline_outputs = np.full_like(outputs, reference)
    residuals = efficiency_sum(main_effects, interactions) - (outputs - baseline_outputs)
    return InteractionResult(
        main_effects=main_effects, interactions=interactions, outputs=outputs,
        baseline_outputs=baseline_outputs, residuals=residuals, **fields,
    )  # fmt: skip


def global_interactions(interactions: np.ndarray, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every pair with its mean |value| over the rows, largest first (ties: pair order).

    [{"variables": [a, b], "mean_abs": v}, ...] with a, b names (or indices without `names`)."""
    interactions = np.asarray(interactions, dtype=np.float64)
    variables = interactions.shape[-1]
    first, second = pair_indices(variables)
    mean_abs = np.abs(interactions[:, first, second]).mean(axis=0) if len(interactions) else np.zeros(len(first))
    order = np.argsort(-mean_abs, kind="stable")
    label = (lambda i: names[i]) if names is not None else int
    return [{"variables": [label(first[k]), label(second[k])], "mean_abs": float(mean_abs[k])} for k in order]


def global_main_effects(main_effects: np.ndarray) -> np.ndarray:
    """[V] mean |main effect| per variable (the order variables are drawn in)."""
    main_effects = np.asarray(main_effects, dtype=np.float64)
    return np.abs(main_effects).mean(axis=0) if len(main_effects) else np.zeros(main_effects.shape[-1])


def strongest_rows(interactions: np.ndarray, pair: tuple[int, int], count: int) -> np.ndarray:
    """Positions of the `count` rows where |pair| is largest (ties: earlier row first)."""
    values = np.abs(np.asarray(interactions)[:, pair[0], pair[1]])
    return np.argsort(-values, kind="stable")[:count]
