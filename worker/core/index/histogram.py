"""The activation histogram: fixed bins read off the float32 bit pattern, and quantiles from it.

Why fixed edges: an index is built by shards that never see each other's activations, and
their histograms must merge by adding counts. Edges fitted to the data (a range from a first
pass, adaptive sketches) would differ per shard; edges fixed in advance, the same for every
shard, layer and model, make the merge exact and free. They therefore have to cover every
float32 an activation can take, from denormals to 3.4e38, with a resolution that is relative
(activations range over decades, and which decades is not known in advance).

The bins are log-linear, like HdrHistogram's: a nonzero value's bin is its exponent and the
top `MANTISSA_BITS` bits of its mantissa, read off its bits by one shift. A bin is then
(2^e (1 + t/16), 2^e (1 + (t+1)/16)] in magnitude: its width is at most 1/16 of any value in
it. Magnitudes up to 2^TINY_EXPONENT (denormals included) share one bin per sign, of absolute
width 2^-24, so that no bins are spent on 100 decades no activation lives in; the top bin
ends at 2^128, so nothing finite falls outside. Exact zeros (the bulk of a ReLU layer) get a
bin of their own. Per activation this is three integer passes (subtract 1, shift, add the
channel's offset) and a bincount: no transcendental function (asinh is several times slower
on a CPU), and the same bin on every device, since integer arithmetic on the bits has no
rounding: a CPU shard and a GPU shard agree. The 8192 raw keys of `(bits - 1) >> 19` (sign,
exponent, 4 mantissa bits; the -1 makes bins closed at the top and moves +0.0 and -0.0, whose
bits are 0 and 0x80000000, onto the keys of NaN, which finite values never use) are folded
into the layout below once per batch, on a [C, 8192] array.

Ordered bins (index order = ascending value), J = magnitude bins per sign:
    0 .. J-1      negative values, most negative first
    J             exactly zero (+0.0 and -0.0)
    J+1 .. 2J     positive values, smallest first

Quantile bound: numpy's (linear) quantile q at p lies between the order statistics x_f and
x_{f+1}, f = floor((n-1) p). Each is located exactly (its bin, from cumulative counts) and
estimated inside its bin; the estimate is off by at most the bin's width, so
    |q_estimate - q| <= max(|x_f|, |x_{f+1}|) / 16 + 2^-24,
and 0 exactly when both lie in the zero bin (for positives: x_f, x_{f+1} > 0 here). Estimates are clamped to the channel's exact
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


RAW_KEYS = 1 << (32 - _SHIFT)  # sign, exponent and mantissa bits kept


def _raw_fold() -> torch.Tensor:
    """For each raw key ((bits - 1) >> _SHIFT, plus RAW_KEYS / 2), its bin in the layout."""
    half = RAW_KEYS // 2
    raw = np.arange(RAW_KEYS, dtype=np.int64) - half
    negative = raw < 0
    key = np.where(negative, raw + half, raw)  # the magnitude's key
    j = np.clip(key - _LOWEST_KEY + 2, 1, PER_SIGN)  # 1: the tiny bin; NaN keys: the top one
    fold = np.where(negative, ZERO_BIN - j, ZERO_BIN + j)
    fold[raw == -1] = ZERO_BIN  # +0.0: bits 0, minus 1
    fold[raw == half - 1] = ZERO_BIN  # -0.0: bits 0x80000000, minus 1 (wraps to 0x7FFFFFFF)
    return torch.from_numpy(fold)


_FOLD = _raw_fold()


def channel_histograms(flat: torch.Tensor) -> torch.Tensor:
    """Counts per channel and bin of activations [N, C, L]: int64 [C, BINS]."""
    channels, device = int(flat.shape[1]), flat.device
    bits = flat.to(torch.float32).contiguous().view(torch.int32)
    offsets = torch.arange(channels, dtype=torch.int32, device=device).view(1, channels, 1) * RAW_KEYS
    raw = torch.sub(bits, 1).bitwise_right_shift_(_SHIFT).add_(offsets + RAW_KEYS // 2)
    counts = torch.bincount(raw.flatten(), minlength=channels * RAW_KEYS).view(channels, RAW_KEYS)
    return counts.new_zeros(channels, BINS).index_add_(1, _FOLD.to(device), counts)


def bin_indices(values: torch.Tensor) -> torch.Tensor:
    """The bin (0 .. BINS-1) of each value (as float32), the way `channel_histograms` counts."""
    bits = values.to(torch.float32).contiguous().view(torch.int32)
    raw = torch.sub(bits, 1).bitwise_right_shift_(_SHIFT).add_(RAW_KEYS // 2)
    return _FOLD.to(values.device)[raw.long()]


def bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges of every bin (float64, [BINS] each), ascending; the zero bin is
    [0, 0]. Positive bins are (lower, upper], negative ones [lower, upper)."""
    keys = np.arange(_LOWEST_KEY, _HIGHEST_KEY + 1, dtype=np.int64)
    exponent, fraction = (keys >> MANTISSA_BITS) - 127, keys & ((1 << MANTISSA_BITS) - 1)
    starts = np.ldexp(1.0 + fraction / (1 << MANTISSA_BITS), exponent)
    ends = np.ldexp(1.0 + (fraction + 1) / (1 << MANTISSA_BITS), exponent)
    low = np.concatenate([[0.0], starts])  # magnitude bins, the tiny one first
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
