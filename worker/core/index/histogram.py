"""The activation histogram: fixed bins read off the float32 bit pattern, and quantiles from it.

Why fixed edges: an index is built by shards that never see each other's activations, and
their histograms must merge by adding counts. Edges fitted to the data (a range from a first
pass, adaptive sketches) would differ per shard; edges fixed in advance, the same for every
shard, layer and model, make the merge exact and free. They therefore have to cover every
float32 an activation can take, from denormals to 3.4e38, with a resolution that is relative
(activations range over decades, and which decades is not known in advance).

The bins are log-linear, like HdrHistogram's: a nonzero value's bin is its exponent and the
top `MANTISSA_BITS` bits of its mantissa, i.e. `bits(|x|) >> (23 - MANTISSA_BITS)`. A bin is
then [2^e (1 + t/16), 2^e (1 + (t+1)/16)): its width is at most 1/16 of any value in it.
Magnitudes below 2^TINY_EXPONENT (denormals included) share one bin per sign, of absolute
width 2^-24, so that no bins are spent on 100 decades no activation lives in; the top bin is
[2^127 * 31/16, 2^128), so nothing finite falls outside. Exact zeros (the bulk of a ReLU layer)
get a bin of their own. This costs a few integer operations per activation (no transcendental
function, 3x faster than asinh on a CPU) and gives the same bin on every device: integer
arithmetic on the bits has no rounding, so a CPU shard and a GPU shard agree.

Ordered bins (index order = ascending value), J = magnitude bins per sign:
    0 .. J-1      negative values, most negative first
    J             exactly zero (+0.0 and -0.0)
    J+1 .. 2J     positive values, smallest first

Quantile bound: numpy's (linear) quantile q at p lies between the order statistics x_f and
x_{f+1}, f = floor((n-1) p). Each is located exactly (its bin, from cumulative counts) and
estimated inside its bin; the estimate is off by at most the bin's width, so
    |q_estimate - q| <= max(|x_f|, |x_{f+1}|) / 16 + 2^-24,
and 0 exactly when both lie in the zero bin. Estimates are clamped to the channel's exact
minimum and maximum where known (clamping towards the truth never adds error).
"""

from __future__ import annotations

import numpy as np
import torch

MANTISSA_BITS = 4
TINY_EXPONENT = -24
_SHIFT = 23 - MANTISSA_BITS
_LOWEST_KEY = (127 + TINY_EXPONENT) << MANTISSA_BITS  # key of the bin starting at 2^TINY_EXPONENT
_HIGHEST_KEY = (254 << MANTISSA_BITS) + (1 << MANTISSA_BITS) - 1  # largest finite exponent
PER_SIGN = _HIGHEST_KEY - _LOWEST_KEY + 2  # the tiny bin + one per key
BINS = 2 * PER_SIGN + 1
ZERO_BIN = PER_SIGN
RELATIVE_ERROR = 2.0**-MANTISSA_BITS
ABSOLUTE_ERROR = 2.0**TINY_EXPONENT


def bin_indices(values: torch.Tensor) -> torch.Tensor:
    """The bin (0 .. BINS-1) of each float32 value, int64, same shape. Elementwise integer
    arithmetic on the bit pattern, on the values' device."""
    bits = values.to(torch.float32).contiguous().view(torch.int32)
    magnitude = bits & 0x7FFFFFFF
    key = (magnitude >> _SHIFT).to(torch.int64)
    j = (key - (_LOWEST_KEY - 1)).clamp_(min=0, max=PER_SIGN - 1)
    index = torch.where(bits < 0, ZERO_BIN - 1 - j, ZERO_BIN + 1 + j)
    return index.masked_fill_(magnitude == 0, ZERO_BIN)


def bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges of every bin (float64, [BINS] each), ascending; the zero bin is
    [0, 0]. Positive bins are [lower, upper), negative ones (lower, upper]."""
    keys = np.arange(_LOWEST_KEY, _HIGHEST_KEY + 1, dtype=np.int64)
    exponent, fraction = (keys >> MANTISSA_BITS) - 127, keys & ((1 << MANTISSA_BITS) - 1)
    starts = np.ldexp(1.0 + fraction / (1 << MANTISSA_BITS), exponent)
    ends = np.ldexp(1.0 + (fraction + 1) / (1 << MANTISSA_BITS), exponent)
    low = np.concatenate([[0.0], starts])  # magnitude bins j = 0 .. PER_SIGN-1
    high = np.concatenate([[ABSOLUTE_ERROR], ends])
    lower = np.concatenate([-high[::-1], [0.0], low])
    upper = np.concatenate([-low[::-1], [0.0], high])
    return lower, upper


def quantiles(
    counts: np.ndarray, probabilities: np.ndarray, minimum: np.ndarray | None = None, maximum: np.ndarray | None = None
) -> np.ndarray:
    """Estimates of numpy's linear quantiles from histograms `counts` [C, BINS] (per channel),
    at `probabilities` [P]: [C, P] float64, NaN for a channel with no activations. `minimum`
    and `maximum` [C], where known, are the exact extremes the estimates are clamped to."""
    counts = np.asarray(counts, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    lower, upper = bin_edges()
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    result = np.full((counts.shape[0], probabilities.size), np.nan)
    for channel in np.flatnonzero(total):
        rank = (total[channel] - 1) * probabilities
        below = np.floor(rank).astype(np.int64)
        above = np.minimum(below + 1, total[channel] - 1)
        low_value = _order_statistic(cumulative[channel], counts[channel], below, lower, upper)
        high_value = _order_statistic(cumulative[channel], counts[channel], above, lower, upper)
        estimate = low_value + (rank - below) * (high_value - low_value)
        low = -np.inf if minimum is None else minimum[channel]
        high = np.inf if maximum is None else maximum[channel]
        result[channel] = np.clip(estimate, low, high)
    return result


def _order_statistic(cumulative, counts, ranks, lower, upper) -> np.ndarray:
    """The value of rank `ranks` (0-based, ascending), estimated at the middle of its share
    of its bin (the bin's values spread evenly across it)."""
    bins = np.searchsorted(cumulative, ranks, side="right")
    before = cumulative[bins] - counts[bins]
    share = (ranks - before + 0.5) / counts[bins]
    return lower[bins] + share * (upper[bins] - lower[bins])
