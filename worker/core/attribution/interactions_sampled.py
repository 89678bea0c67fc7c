"""Sampled pairwise Shapley interactions, for more variables than all 2^M coalitions allow.

One set of coalitions is drawn (seeded) for all the rows of a job, evaluated with every row and
background row in large batches (base.coalition_values), and every row's estimate is a fixed
linear map of its coalition values. The budget is the number of distinct coalitions evaluated
(each costs one model row per background row per explained row).

k-SII and STII: permutation sampling. For a uniformly random order pi of the variables, with
P_k the first k variables of pi, the pair {i, j} (i placed at a, j at b, a < b) gives

    STII sample: d_ij(P_a)            (S = the variables before the pair: STII's weights)
    SII samples: d_ij(P_a) and d_ij(P_b minus {i})   (S = those before one member, the other
                 left out: exactly Grabisch's SII weights (M-|S|-2)! |S|! / (M-1)!, one per role)

with d_ij(S) = v(S+i+j) - v(S+i) - v(S+j) + v(S); the Shapley value sample of i is
v(P_a + i) - v(P_a). Each order needs only its M + 1 prefixes, the prefixes plus one later
variable and the prefixes minus one earlier one: M^2 + 1 coalitions for a sample of EVERY pair,
about one coalition per pair and sample. k-SII (order 2) is then SII on pairs and, per variable,
its Shapley value minus half its SII pairs; its efficiency holds exactly for every permutation
(the Shapley samples telescope to v(N) - v(0)), so the residual stays at float rounding and
the error is read from the spread instead: the permutations are independent, so the standard
error of each value is the standard deviation of its per-permutation samples over sqrt(R).
STII's main effects v(i) - v(0) are exact (every singleton is in every order's coalitions); its
sampled pairs leave an efficiency residual, a second error signal. Why not KernelSHAP-IQ's
regressions: they are often more accurate per coalition, but their error has no such simple
honest estimate, and permutation samples are unbiased at any budget.

FSII: kernel-weighted least squares. FSII is by definition the order-2 fit to all coalition
values with the Shapley kernel's weights (v(0) and efficiency held exactly), so the estimator
is that fit on coalitions drawn as KernelSHAP draws them (kernel_shap.kernel_coalitions: whole
coalition sizes enumerated first, the rest sampled by kernel weight, complements paired), the
same route as shapiq's RegressionFSII; with a budget that covers every coalition it is exact.
Its error: the standard deviation of the fit over bootstrap resamplings of the sampled
coalitions (the enumerated sizes are kept: they carry no sampling error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np
import torch

from worker.core.attribution.interaction_result import pair_indices
from worker.core.attribution.kernel_shap import kernel_coalitions

BOOTSTRAPS = 16
MAX_ORDERS = 100_000


def default_budget(variables: int) -> int:
    """Coalitions per job when none is asked: about 32 permutations' worth."""
    return max(4096, 32 * variables * variables)


def order_costs(variables: int) -> tuple[int, int]:
    """Coalitions added by the first order and by each next one: every order shares the empty
    and full coalitions, the singletons and their complements (2M + 2 of its M^2 + 1)."""
    return variables * variables + 1, max(1, variables * variables - 2 * variables - 1)


def minimum_budget(index: str, variables: int) -> int:
    pairs = variables * (variables - 1) // 2
    if index == "FSII":
        return 2 * (variables + pairs) + 2
    return sum(order_costs(variables))  # two orders: a spread needs two samples


@dataclass
class Estimate:
    main: torch.Tensor  # [n, M]
    pairs: torch.Tensor  # [n, P] in pair_indices order
    main_errors: torch.Tensor  # [n, M]
    pair_errors: torch.Tensor  # [n, P]


@dataclass
class SamplingPlan:
    coalitions: torch.Tensor  # [K, M] bool: the coalitions to forward_in_batches
    details: dict[str, Any] = field(default_factory=dict)

    def estimate(self, values: torch.Tensor) -> Estimate:  # values [n, K] float64
        raise NotImplementedError


def plan(index: str, variables: int, budget: int, seed: int) -> SamplingPlan:
    if variables < 2:
        raise ValueError("sampled interactions need at least 2 variables")
    least = minimum_budget(index, variables)
    if budget < least:
        raise ValueError(
            f"a budget of {budget} coalitions is too small for {index} on {variables} variables: at least {least}"
        )
    if index == "FSII":
        return RegressionPlan.draw(variables, budget, seed)
    return PermutationPlan.draw(index, variables, budget, seed)


# ----------------------------------------------------------------------------------- permutations


def _position_layout(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coalitions of one order, in position space: (masks [M^2+1, M] over positions,
    plus [M+1, M]: slot of P_k + position b (b >= k), minus [M+1, M]: slot of P_k - position b
    (b < k); -1 where undefined)."""
    masks = [np.arange(m) < k for k in range(m + 1)]  # prefixes P_0..P_M in slots 0..M
    plus = np.full((m + 1, m), -1)
    minus = np.full((m + 1, m), -1)
    for k in range(m + 1):
        for b in range(m):
            if b == k:
                plus[k, b] = k + 1
            elif b > k:
                plus[k, b] = len(masks)
                masks.append((np.arange(m) < k) | (np.arange(m) == b))
            elif b == k - 1:
                minus[k, b] = k - 1
            else:
                minus[k, b] = len(masks)
                masks.append((np.arange(m) < k) & (np.arange(m) != b))
    return np.array(masks), plus, minus


@dataclass
class PermutationPlan(SamplingPlan):
    index: str = "k-SII"
    slots: torch.Tensor | None = None  # [R, L]: column of `values` for each order's slots
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    main_positions: torch.Tensor | None = None  # [R, M]: position of variable v in order r
    pair_positions: torch.Tensor | None = None  # [R, P]: position-pair index of variable pair p
    incidence: torch.Tensor | None = None  # [P, M]: pair p contains variable v

    @classmethod
    def draw(cls, index: str, m: int, budget: int, seed: int) -> PermutationPlan:
        """Orders are drawn until the next one would take the distinct coalitions past the budget."""
        rng = np.random.default_rng(seed)
        local, plus, minus = _position_layout(m)
        orders: list[np.ndarray] = []
        seen: set[bytes] = set()
        while len(orders) < MAX_ORDERS:
            order = rng.permutation(m)
            new = {row.tobytes() for row in np.packbits(local[:, np.argsort(order)], axis=1)} - seen
            if len(seen) + len(new) > budget:
                break
            seen |= new
            orders.append(order)
        count = len(orders)
        positions = np.argsort(np.stack(orders), axis=1)  # positions[r, v]: where v stands in order r
        by_variable = local[:, positions]  # [L, R, M]: variable v in slot s of order r
        packed = np.packbits(by_variable.transpose(1, 0, 2).reshape(-1, m), axis=1)
        unique, inverse = np.unique(packed, axis=0, return_inverse=True)
        coalitions = np.unpackbits(unique, axis=1, count=m).astype(bool)
        a, b = pair_indices(m)  # position pairs, a < b
        pair_of_positions = np.full((m, m), -1)
        pair_of_positions[a, b] = np.arange(len(a))
        i, j = pair_indices(m)  # variable pairs
        low, high = np.minimum(positions[:, i], positions[:, j]), np.maximum(positions[:, i], positions[:, j])
        terms = {  # slots of the four coalitions of each difference, position space
            "first": np.stack([plus[a + 1, b], a + 1, plus[a, b], a]),  # d(P_a), the earlier one's role
            "second": np.stack([b + 1, minus[b + 1, a], b, minus[b, a]]),  # d(P_b - a), the later one's
            "shapley": np.stack([np.arange(1, m + 1), np.arange(m)]),
            "single": np.stack([plus[0], np.zeros(m, dtype=int)]),
        }
        incidence = np.zeros((len(i), m))
        incidence[np.arange(len(i)), i] = incidence[np.arange(len(i)), j] = 1.0
        return cls(
            coalitions=torch.from_numpy(coalitions),
            details={"estimator": "permutation sampling", "permutations": count, "coalitions": len(coalitions)},
            index=index,
            slots=torch.from_numpy(inverse.reshape(count, -1)),
            terms={name: torch.from_numpy(value) for name, value in terms.items()},
            main_positions=torch.from_numpy(positions),
            pair_positions=torch.from_numpy(pair_of_positions[low, high]),
            incidence=torch.from_numpy(incidence),
        )

    def _term(self, local: torch.Tensor, name: str) -> torch.Tensor:
        """A signed sum of slot values (+ - - +, or + -) per position (pair): [n, R, X]."""
        slots = self.terms[name].to(local.device)
        signs = [1.0, -1.0, -1.0, 1.0] if slots.shape[0] == 4 else [1.0, -1.0]
        return sum(sign * local[:, :, slots[k]] for k, sign in enumerate(signs))

    def estimate(self, values: torch.Tensor) -> Estimate:
        device = values.device
        local = values[:, self.slots.to(device)]  # [n, R, L]
        count = local.shape[1]
        order_pairs = self.pair_positions.to(device)[None].expand(local.shape[0], -1, -1)
        order_mains = self.main_positions.to(device)[None].expand(local.shape[0], -1, -1)
        stii = torch.gather(self._term(local, "first"), 2, order_pairs)  # [n, R, P]
        if self.index == "STII":
            pairs = stii
            single = self._term(local, "single")[:, 0]  # [n, M] by position of order 0
            main = torch.gather(single, 1, self.main_positions[0].to(device)[None].expand(single.shape[0], -1))
            mains = main[:, None, :].expand(-1, count, -1)
        else:
            pairs = 0.5 * (stii + torch.gather(self._term(local, "second"), 2, order_pairs))
            shapley = torch.gather(self._term(local, "shapley"), 2, order_mains)  # [n, R, M]
            mains = shapley - 0.5 * pairs @ self.incidence.to(device, pairs.dtype)

        def spread(samples: torch.Tensor) -> torch.Tensor:
            return samples.std(dim=1, correction=1) / count**0.5

        return Estimate(mains.mean(dim=1), pairs.mean(dim=1), spread(mains), spread(pairs))


# ----------------------------------------------------------------------------------- regression


def _pair_design(coalitions: np.ndarray) -> np.ndarray:
    """[K, M] bool -> [K, M + P]: membership of each variable, then of each pair."""
    z = coalitions.astype(np.float64)
    i, j = pair_indices(coalitions.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], axis=1)


def _enumerated(coalitions: np.ndarray) -> np.ndarray:
    """[K] bool: the coalitions of the sizes kernel_coalitions enumerated whole (the smallest
    and largest, in pairs), which a bootstrap keeps as they are."""
    m = coalitions.shape[1]
    sizes = coalitions.sum(axis=1)
    full = 0
    while full < m // 2 and all((sizes == s).sum() == comb(m, s) for s in (full + 1, m - full - 1)):
        full += 1
    return (sizes <= full) | (sizes >= m - full)


@dataclass
class RegressionPlan(SamplingPlan):
    """Rows 0 and 1 of `coalitions` are the empty and the full coalition (v(0) and the
    efficiency constraint); the rest are kernel_coalitions' draw."""

    variables: int = 0
    solve: torch.Tensor | None = None  # [Q-1, K]: the constrained fit (Q = M + P unknowns)
    last: torch.Tensor | None = None  # [K] the eliminated unknown's column
    boot_weights: torch.Tensor | None = None  # [B, K] bootstrap weights x kernel weights
    boot_inverse: torch.Tensor | None = None  # [B, Q-1, Q-1]
    design: torch.Tensor | None = None  # [K, Q-1]

    @classmethod
    def draw(cls, m: int, budget: int, seed: int) -> RegressionPlan:
        coalitions, weights = kernel_coalitions(m, budget - 2, seed)
        complete = len(coalitions) >= 2**m - 2
        z = _pair_design(coalitions)
        design = z[:, :-1] - z[:, -1:]  # efficiency eliminates the last unknown
        root = np.sqrt(weights)[:, None]
        solve = np.linalg.pinv(root * design)
        boot_weights = boot_inverse = None
        if not complete:
            drawn = ~_enumerated(coalitions)
            counts = np.ones((BOOTSTRAPS, len(weights)))
            counts[:, drawn] = np.random.default_rng([seed, 2]).multinomial(
                drawn.sum(), np.full(drawn.sum(), 1 / drawn.sum()), BOOTSTRAPS
            )
            boot_weights = counts * weights[None, :]
            boot_inverse = np.stack(
                [np.linalg.pinv((design * w[:, None]).T @ design, hermitian=True) for w in boot_weights]
            )
        ends = np.stack([np.zeros(m, dtype=bool), np.ones(m, dtype=bool)])
        return cls(
            coalitions=torch.from_numpy(np.concatenate([ends, coalitions])),
            details={
                "estimator": "kernel-weighted least squares", "coalitions": len(coalitions) + 2,
                "bootstraps": 0 if complete else BOOTSTRAPS, "all_coalitions": complete,
            },
            variables=m,
            solve=torch.from_numpy(solve * root[:, 0][None, :]),
            last=torch.from_numpy(z[:, -1]),
            boot_weights=None if boot_weights is None else torch.from_numpy(boot_weights),
            boot_inverse=None if boot_inverse is None else torch.from_numpy(boot_inverse),
            design=torch.from_numpy(design),
        )  # fmt: skip

    def _complete(self, head: torch.Tensor, difference: torch.Tensor) -> torch.Tensor:
        return torch.cat([head, (difference - head.sum(dim=-1))[..., None]], dim=-1)

    def estimate(self, values: torch.Tensor) -> Estimate:
        values = values.cpu()
        empty, difference = values[:, 0], values[:, 1] - values[:, 0]
        target = values[:, 2:] - empty[:, None] - self.last[None, :] * difference[:, None]  # [n, K]
        fit = self._complete(target @ self.solve.T, difference)  # [n, Q]
        if self.boot_weights is None:
            errors = torch.zeros_like(fit)
        else:
            rhs = (target[None] * self.boot_weights[:, None, :]) @ self.design  # [B, n, Q-1]
            boots = self._complete(rhs @ self.boot_inverse.transpose(1, 2), difference[None])  # [B, n, Q]
            errors = boots.std(dim=0, correction=1)
        m = self.variables
        return Estimate(fit[:, :m], fit[:, m:], errors[:, :m], errors[:, m:])
