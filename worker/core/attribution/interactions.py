"""Pairwise (order 2) Shapley interactions: which variables act together on an output or neuron.

Same value function as the other Shapley methods here (shapley.py): v(S) = mean over the
background rows b of f(x on the variables of S, b elsewhere), a categorical being one player.
Per explained row: a main effect per variable and a value per pair, for one of three indices:

- ``k-SII`` (Bordt & von Luxburg 2023; the default): Grabisch's Shapley interaction index on
  pairs, the Shapley values minus half of each variable's pairs as main effects. Efficient:
  main effects plus pairs add up exactly to f(x) - E_b f(b).
- ``STII`` (Shapley-Taylor, Sundararajan et al. 2020): main effects v(i) - v(0) (the variable
  alone), pairs take every higher-order effect, shared equally among the pairs it covers.
  Efficient.
- ``FSII`` (Faith-Shap, Tsai et al. 2023): the best order-2 fit of all coalition values under
  the Shapley kernel's weights, v(0) and v(N) held exactly. Efficient.

Exact up to MAX_VARIABLES variables, from all 2^M coalition values of a row (one pass of the
batched base.coalition_values, the cost of exact Shapley values): their Moebius transform
m(R) = sum_{L in R} (-1)^{|R|-|L|} v(L) (the pure effect of each coalition, M butterfly
passes), then each index spreads every m(R) over the variables and pairs inside R with
weights that depend on |R| = r only (the closed forms; FSII's is Tsai et al.'s Theorem 19,
which solves its weighted least squares for order 2):

                main effect of i (R contains i)        pair {i, j} (R contains both)
    k-SII       1 if r = 1, else 1/r - 1/2             1/(r - 1)
    STII        1 if r = 1, else 0                     1/C(r, 2)
    FSII        1 if r = 1, 0 if r = 2,                1 if r = 2, else 6/(r (r + 1))
                else -2 (r - 2)/(r (r + 1))

(each column adds up to 1 over a coalition's members and pairs: the efficiency). A model that
is a sum of one-variable functions has m(R) = 0 for |R| >= 2, so all its pairs are exactly 0;
f = a*b with baseline 0 has only m({a, b}) = ab: every index gives the pair ab and no main
effect. The shapiq library computes the same indices (tests/worker/core/test_interactions_exact.py checks
equality), but its exact computer walks coalitions in Python per row, and it has no batching
over rows and background rows; the enumeration here is a few matrix products on the value
table (bench/interactions.py).

Above MAX_VARIABLES (or with sampled=True): the estimators of interactions_sampled.py, with a
budget of coalitions and a standard error per value.
"""

from __future__ import annotations

import functools
from math import comb
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.core.attribution import interactions_sampled
from worker.core.attribution.base import Attribution, Groups, ProgressCallback, coalition_values, column_masks
from worker.core.attribution.interaction_result import InteractionResult, finish, pair_indices, pairs_to_matrix
from worker.core.attribution.shapley import all_coalitions

# Above this many variables the sampled estimators are used unless the caller says otherwise
# (2^12 coalition values per row is where exact enumeration stops being a few milliseconds).
MAX_VARIABLES = 12

INDICES = ("k-SII", "STII", "FSII")
DEFAULT_INDEX = "k-SII"


def _weights(index: str, size: int) -> tuple[float, float]:
    """(main-effect weight, pair weight) of a coalition of `size` for each member / pair."""
    r = size
    if index in INDICES and r == 0:
        return 0.0, 0.0  # m(0) = v(0) is the reference, not attributed
    if index == "k-SII":
        return (1.0 if r == 1 else 1 / r - 0.5), (1 / (r - 1) if r >= 2 else 0.0)
    if index == "STII":
        return (1.0 if r == 1 else 0.0), (1 / comb(r, 2) if r >= 2 else 0.0)
    if index == "FSII":
        main = 1.0 if r == 1 else (0.0 if r == 2 else -2 * (r - 2) / (r * (r + 1)))
        return main, (1.0 if r == 2 else (6 / (r * (r + 1)) if r > 2 else 0.0))
    raise ValueError(f"index must be one of {', '.join(INDICES)}, not {index!r}")


@functools.lru_cache(maxsize=8)
def index_coefficients(index: str, variables: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([2^M, M], [2^M, P]) float64: Moebius coefficient (by bit code) -> main effects, pairs."""
    members = all_coalitions(variables)
    sizes = members.sum(dim=1)
    table = torch.tensor([_weights(index, r) for r in range(variables + 1)], dtype=torch.float64)
    main = members * table[sizes, 0][:, None]
    first, second = pair_indices(variables)
    pairs = (members[:, first] & members[:, second]) * table[sizes, 1][:, None]
    return main, pairs


def moebius(values: torch.Tensor, variables: int) -> torch.Tensor:
    """[N, 2^M] coalition values (bit codes) -> [N, 2^M] Moebius transform."""
    transform = values.double().clone()
    for j in range(variables):
        halves = transform.view(transform.shape[0], -1, 2, 1 << j)
        halves[:, :, 1, :] -= halves[:, :, 0, :]
    return transform


def exact_interactions(values: torch.Tensor, variables: int, index: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 2^M] coalition values -> (main effects [N, M], pairs [N, P]), float64."""
    main, pairs = index_coefficients(index, variables)
    transform = moebius(values, variables)
    return transform @ main.to(transform.device), transform @ pairs.to(transform.device)


class ShapleyInteractions(Attribution):
    """attribute() returns [N, 2 (M + P)]: main effects, pairs, then their standard errors
    (zeros when exact); `shapley_interactions` unpacks them."""

    name = "shapley_interactions"
    complete = True

    def __init__(
        self, forward: nn.Module, *, index: str = DEFAULT_INDEX, sampled: bool | None = None, batch: int | None = None
    ):
        super().__init__(forward, batch=batch)
        _weights(index, 1)  # validates the index
        self.index = index
        self.sampled = sampled
        self.details: dict[str, Any] = {}

    def is_sampled(self, variables: int) -> bool:
        return variables > MAX_VARIABLES if self.sampled is None else self.sampled

    def budget(self, variables: int, n_samples: int | None) -> int:
        return n_samples or interactions_sampled.default_budget(variables)

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background

    def setup(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, **options: Any) -> Any:
        m = len(groups)
        budget = self.budget(m, options["n_samples"])
        if not self.is_sampled(m) or budget >= 2**m:  # a budget that covers every coalition: exact
            if m > MAX_VARIABLES:
                raise ValueError(
                    f"exact Shapley interactions need all 2^{m} coalitions; the limit is {MAX_VARIABLES} variables"
                )
            self.details = {"estimator": "exact", "coalitions": 2**m}
            return column_masks(all_coalitions(m), groups, inputs.shape[1])
        sampler = interactions_sampled.plan(self.index, m, budget, options["seed"])
        self.details = {**sampler.details, "budget": budget, "seed": options["seed"]}
        return sampler, column_masks(sampler.coalitions, groups, inputs.shape[1])

    def attribute_chunk(
        self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any
    ) -> torch.Tensor:
        m = len(groups)
        if isinstance(state, tuple):
            sampler, masks = state
            values = coalition_values(self.forward, inputs, baselines, masks, self.batch)
            estimate = sampler.estimate(values)
            parts = [estimate.main, estimate.pairs, estimate.main_errors, estimate.pair_errors]
            return torch.cat([part.to(values.device) for part in parts], dim=1)
        values = coalition_values(self.forward, inputs, baselines, state, self.batch)
        main, pairs = exact_interactions(values, m, self.index)
        return torch.cat([main, pairs, torch.zeros_like(main), torch.zeros_like(pairs)], dim=1)


def shapley_interactions(
    forward: nn.Module,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    groups: Groups,
    *,
    index: str = DEFAULT_INDEX,
    budget: int | None = None,
    sampled: bool | None = None,
    seed: int = 0,
    progress: ProgressCallback = None,
) -> InteractionResult:
    """Order-2 Shapley interactions of every row of `inputs` [N, D] against `baselines` [B, D].

    Exact up to MAX_VARIABLES variables unless `sampled`; sampled: `budget` coalitions
    (default interactions_sampled.default_budget), drawn from `seed`."""
    method = ShapleyInteractions(forward, index=index, sampled=sampled)
    packed = method.attribute(inputs, baselines, groups, n_samples=budget, seed=seed, progress=progress).numpy()
    m = len(groups)
    width = m + m * (m - 1) // 2
    packed = packed.reshape(-1, 2 * width)  # no rows: the base returns [0, M]
    main, pairs, main_errors, pair_errors = np.split(packed, [m, width, width + m], axis=1)
    exact = method.details["estimator"] == "exact"
    return finish(
        forward, inputs, baselines, main, pairs_to_matrix(pairs, m),
        method="shapley_interactions", index=index, exact=exact, complete=True,
        main_errors=None if exact else main_errors, interaction_errors=None if exact else pairs_to_matrix(pair_errors, m),
        details=method.details,
    )  # fmt: skip
