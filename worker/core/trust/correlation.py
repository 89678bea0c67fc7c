"""Rank and linear correlation between the rows of two matrices, batched, in float64.

Both trust checks compare vectors by Spearman's rank correlation: it asks whether two vectors
order their entries alike, whatever the scale of each (a visualization may excite a layer ten
times more than a photo does; a projection of a randomized network has another magnitude).
Ties get the average of the ranks they span (scipy.stats.rankdata's default), so the result is
scipy.stats.spearmanr's. A row with no spread (all entries equal) carries no order: its
correlation with anything is defined here as 0 ("uncorrelated"), where scipy answers NaN,
which JSON cannot carry.
"""

from __future__ import annotations

import math

import torch


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks of each row of `x` [N, F] (0-based; ties share the mean of the ranks they span),
    float64. Two binary searches in the sorted row give, per entry, how many entries are
    smaller and how many are not larger; the tied block is the ranks between them."""
    values = x.detach().to(torch.float64)
    ordered = values.sort(dim=1).values.contiguous()
    lower = torch.searchsorted(ordered, values.contiguous(), right=False)
    upper = torch.searchsorted(ordered, values.contiguous(), right=True)
    return (lower + upper - 1).to(torch.float64) / 2


def pearson_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every row of `a` [N, F] with every row of `b` [M, F]: [N, M],
    float64; 0 where a row has no spread."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rows of different lengths: {a.shape[1]} and {b.shape[1]}")
    za, zb = _standardized(a), _standardized(b)
    return (za @ zb.T).clamp(-1.0, 1.0)


def spearman_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of every row of `a` [N, F] with every row of `b` [M, F]:
    [N, M], float64 (the Pearson correlation of the rows' average ranks)."""
    return pearson_matrix(average_ranks(a), average_ranks(b))


def spearman_pairs(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
    """Spearman rank correlation of row i of `a` with row i of `b` ([N, F] each): [N]. With
    `where` (bool [N, F]), row i counts only its entries where where[i] is True: the others are
    set to +inf in both rows, where they tie above every counted entry and so leave the counted
    entries' ranks as they are, and are then left out of the correlation."""
    if a.shape != b.shape:
        raise ValueError(f"paired rows need equal shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    if where is None:
        za, zb = _standardized(average_ranks(a)), _standardized(average_ranks(b))
        return (za * zb).sum(dim=1).clamp(-1.0, 1.0)
    keep = where.to(torch.bool).cpu()
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    ra = average_ranks(torch.where(keep, a.detach().to(torch.float64).cpu(), inf))
    rb = average_ranks(torch.where(keep, b.detach().to(torch.float64).cpu(), inf))
    return (_standardized(ra, keep) * _standardized(rb, keep)).sum(dim=1).clamp(-1.0, 1.0)


def _standardized(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Rows centred and scaled to unit norm over their kept entries (the others 0); a row whose
    kept entries are all equal stays 0 (its mean, rounded, would leave a residue of ~1e-17 that
    normalizing would blow up)."""
    values = x.detach().to(torch.float64)
    if keep is None:
        keep = torch.ones_like(values, dtype=torch.bool)
    count = keep.sum(dim=1, keepdim=True)
    high = values.masked_fill(~keep, -math.inf).amax(dim=1, keepdim=True) if values.shape[1] else count
    low = values.masked_fill(~keep, math.inf).amin(dim=1, keepdim=True) if values.shape[1] else count
    mean = torch.where(keep, values, 0.0).sum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(keep, values - mean, 0.0)
    norm = centred.norm(dim=1, keepdim=True)
    spread = (count > 1) & (high > low) & (norm > 0)
    return torch.where(spread, centred / torch.where(spread, norm, 1.0), 0.0)
