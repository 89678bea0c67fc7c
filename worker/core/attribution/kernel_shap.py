"""KernelSHAP (Lundberg & Lee 2017), batched over rows.

Captum's KernelShap fits one weighted linear model per row, drawing its coalitions one at a
time in Python (Captum warns that this is slow for batches): under 20 rows/s on the retail
model with ONE baseline row, and a background would multiply its work again (see
bench/results/tabular_attribution.md). This module keeps the algorithm and the value function of the shap package's
KernelExplainer, but draws ONE set of coalitions (seeded) for all the rows of a job, evaluates
the model on every (row, coalition, background row) in large batches, and solves every row's
constrained least squares with one pseudo-inverse.

Coalitions, as shap draws them: subset sizes s and M - s are paired; whole sizes (smallest
first) are enumerated while the budget covers them, with the Shapley kernel's weight; the
remaining budget is drawn at random (size by kernel weight, then a random subset, plus its
complement), repeats adding weight. With a budget of 2^M - 2 coalitions or more, all of them are
enumerated and the result is the exact Shapley value. The fit enforces efficiency exactly:
the attributions add up to f(x) - E f(b).
"""

from __future__ import annotations

import itertools
from math import comb
from typing import Any

import numpy as np
import torch

from worker.core.attribution.base import Attribution, Groups, coalition_values, column_masks, forward_in_batches


def kernel_coalitions(variables: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(coalitions [K, M] bool, weights [K]) for a budget of n_samples coalitions."""
    m = variables
    if m < 2:
        return np.zeros((0, m), dtype=bool), np.zeros(0)
    rng = np.random.default_rng(seed)
    sizes = int(np.ceil((m - 1) / 2.0))
    paired = int(np.floor((m - 1) / 2.0))
    kernel = np.array([(m - 1.0) / (s * (m - s)) for s in range(1, sizes + 1)])
    kernel[:paired] *= 2
    kernel /= kernel.sum()
    masks: list[np.ndarray] = []
    weights: list[float] = []
    left = min(n_samples, 2**m - 2)
    remaining = kernel.copy()
    full = 0
    for size in range(1, sizes + 1):
        count = comb(m, size) * (2 if size <= paired else 1)
        if left * remaining[size - 1] / count < 1.0 - 1e-8:
            break
        full += 1
        left -= count
        if remaining[size - 1] < 1.0:
            remaining /= 1.0 - remaining[size - 1]
        weight = kernel[size - 1] / comb(m, size) / (2.0 if size <= paired else 1.0)
        for members in itertools.combinations(range(m), size):
            mask = np.zeros(m, dtype=bool)
            mask[list(members)] = True
            masks.append(mask)
            weights.append(weight)
            if size <= paired:
                masks.append(~mask)
                weights.append(weight)
    fixed = len(masks)
    if full != sizes and left > 0:
        draw = kernel.copy()
        draw[:paired] /= 2
        draw = draw[full:]
        draw /= draw.sum()
        picks = rng.choice(len(draw), 4 * left, p=draw)
        used: dict[bytes, int] = {}
        for pick in picks:
            if left <= 0:
                break
            size = int(pick) + full + 1
            mask = np.zeros(m, dtype=bool)
            mask[rng.permutation(m)[:size]] = True
            key = mask.tobytes()
            new = key not in used
            if new:
                used[key] = len(masks)
                masks.append(mask)
                weights.append(1.0)
                left -= 1
            else:
                weights[used[key]] += 1.0
            if left > 0 and size <= paired:
                if new:
                    masks.append(~mask)
                    weights.append(1.0)
                    left -= 1
                else:
                    weights[used[key] + 1] += 1.0
        sampled = np.asarray(weights[fixed:])
        if sampled.size:
            weights[fixed:] = list(sampled * kernel[full:].sum() / sampled.sum())
    return np.array(masks, dtype=bool).reshape(-1, m), np.asarray(weights, dtype=np.float64)


class KernelShap(Attribution):
    name = "kernel_shap"
    complete = True
    needs_n_samples = True

    def setup(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, **options: Any) -> Any:
        m = len(groups)
        budget = options["n_samples"]  # coalitions; more than 2^M - 2 means all of them
        coalitions, weights = kernel_coalitions(m, budget, options["seed"])
        reference = forward_in_batches(self.forward, baselines).double().mean()
        if m < 2:
            return {"masks": None, "reference": reference}
        z = coalitions.astype(np.float64)
        design = z[:, :-1] - z[:, -1:]  # efficiency eliminates the last variable
        root = np.sqrt(weights)[:, None]
        solve = np.linalg.pinv(root * design)  # [M-1, K]
        return {
            "masks": column_masks(torch.from_numpy(coalitions), groups, inputs.shape[1]),
            "last": torch.from_numpy(z[:, -1]),
            "root": torch.from_numpy(root[:, 0]),
            "solve": torch.from_numpy(solve),
            "reference": reference,
        }

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        output = forward_in_batches(self.forward, inputs).double().cpu()
        difference = output - state["reference"].cpu()  # [N]
        if state["masks"] is None:
            return difference[:, None]
        values = coalition_values(self.forward, inputs, baselines, state["masks"], self.batch).cpu()
        target = values - state["reference"].cpu() - state["last"][None, :] * difference[:, None]  # [N, K]
        head = (state["solve"] @ (state["root"][:, None] * target.T)).T  # [N, M-1]
        return torch.cat([head, (difference - head.sum(dim=1))[:, None]], dim=1)
