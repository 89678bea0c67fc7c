"""LayerStats in and out: plain numpy arrays for one .npz blob, and a JSON summary per channel.

The arrays are numbers only (no object arrays), so `np.savez` writes them without pickle and
`np.load(..., allow_pickle=False)` reads them back; the histogram layout's constants travel
with them and are checked on load, so an index built under another layout is refused rather
than misread. The histogram is stored as the window of bins any channel uses (a ReLU layer
fills a few hundred of its ~4900), which keeps the blob small with or without compression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from worker.core.index import histogram
from worker.core.index.ranking import Ranked
from worker.core.index.stats import LayerStats

FORMAT = 2  # 2: with top_mean
DEFAULT_PROBABILITIES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
_COUNTS = ("format", "k", "bottom_k", "channels", "position_dims", "images", "activations")
_LAYOUT = {"histogram_mantissa_bits": histogram.MANTISSA_BITS, "histogram_tiny_exponent": histogram.TINY_EXPONENT}


def to_arrays(stats: LayerStats) -> dict[str, np.ndarray]:
    """Every number of `stats` as named numpy arrays (int64, float32, float64 only)."""
    _check_finite(stats)
    scalars = {
        "format": FORMAT,
        "k": stats.k,
        "bottom_k": stats.bottom_k,
        "channels": -1 if stats.channels is None else stats.channels,
        "position_dims": -1 if stats.position_dims is None else stats.position_dims,
        "images": stats.images,
        "activations": stats.activations,
        **_LAYOUT,
    }
    arrays = {name: np.asarray(value, dtype=np.int64) for name, value in scalars.items()}
    if stats.channels is None:
        return arrays
    for prefix, ranked in (("top", stats.top), ("bottom", stats.bottom), ("top_mean", stats.top_mean)):
        arrays[f"{prefix}_values"] = _numpy(ranked.values)
        arrays[f"{prefix}_images"] = _numpy(ranked.images)
        arrays[f"{prefix}_positions"] = _numpy(ranked.positions)
    counts = _numpy(stats.histogram)
    used = np.flatnonzero(counts.any(axis=0))
    start, stop = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    arrays["histogram_start"] = np.asarray(start, dtype=np.int64)
    arrays["histogram"] = np.ascontiguousarray(counts[:, start:stop])
    for name in ("sum", "sum_squares", "class_sum", "class_count", "class_max"):
        arrays[name] = _numpy(getattr(stats, name))
    return arrays


def from_arrays(arrays: Mapping[str, np.ndarray]) -> LayerStats:
    """The LayerStats `to_arrays` described (on the CPU). Accepts the mapping `np.load` returns."""
    number = {name: int(np.asarray(arrays[name])) for name in _COUNTS}
    if number["format"] != FORMAT:
        raise ValueError(f"activation index format {number['format']}, this code reads {FORMAT}")
    for name, expected in _LAYOUT.items():
        if int(np.asarray(arrays[name])) != expected:
            raise ValueError(f"index built with {name}={int(np.asarray(arrays[name]))}, this code uses {expected}")
    stats = LayerStats(number["k"], number["bottom_k"])
    stats.images, stats.activations = number["images"], number["activations"]
    if number["channels"] < 0:
        return stats
    dims = None if number["position_dims"] < 0 else number["position_dims"]
    stats._start(number["channels"], dims, torch.device("cpu"))
    for prefix in ("top", "bottom", "top_mean"):
        ranked = Ranked(*(_tensor(arrays[f"{prefix}_{part}"]) for part in ("values", "images", "positions")))
        setattr(stats, prefix, ranked)
    window = _tensor(arrays["histogram"])
    start = int(np.asarray(arrays["histogram_start"]))
    stats.histogram[:, start : start + window.shape[1]] = window
    for name in ("sum", "sum_squares", "class_sum", "class_count", "class_max"):
        setattr(stats, name, _tensor(arrays[name]))
    return stats


def summary(stats: LayerStats, top: int | None = None, probabilities: Sequence[float] | None = None) -> dict:
    """A JSON-ready description: the layer's counts and, per channel, mean, std, fraction
    positive, max (and min where the bottom is kept), quantiles estimated from the histogram
    (error bound in `quantile_error`), the `top` best entries (all kept when None), the bottom
    ones, and per class the count, mean and max of the images' largest activation."""
    _check_finite(stats)
    points = tuple(DEFAULT_PROBABILITIES if probabilities is None else probabilities)
    layer = {
        "images": stats.images,
        "activations_per_channel": stats.activations,
        "k": stats.k,
        "bottom_k": stats.bottom_k,
        "quantile_error": f"|estimate - exact| <= max|neighbouring order statistics| * 2^-{histogram.MANTISSA_BITS}"
        f" + 2^{histogram.TINY_EXPONENT}",
        "channels": [],
    }
    if stats.channels is None or stats.images == 0:
        return layer
    arrays = to_arrays(stats)
    counts = _numpy(stats.histogram)
    total = max(stats.activations, 1)
    mean = arrays["sum"] / total
    std = np.sqrt(np.maximum(arrays["sum_squares"] / total - mean * mean, 0.0))
    positive = counts[:, histogram.ZERO_BIN + 1 :].sum(axis=1) / total
    maximum = arrays["top_values"][:, 0].astype(np.float64)
    minimum = arrays["bottom_values"][:, 0].astype(np.float64) if stats.bottom_k else None
    estimates = histogram.quantiles(counts, np.asarray(points, dtype=np.float64), minimum, maximum)
    shown = stats.k if top is None else top
    for channel in range(stats.channels):
        layer["channels"].append(
            {
                "channel": channel,
                "mean": _float(mean[channel]),
                "std": _float(std[channel]),
                "fraction_positive": _float(positive[channel]),
                "max": _float(maximum[channel]),
                "min": None if minimum is None else _float(minimum[channel]),
                "quantiles": {f"{p:g}": _float(v) for p, v in zip(points, estimates[channel], strict=True)},
                "top": _entries(arrays, "top", channel, shown),
                "bottom": _entries(arrays, "bottom", channel, shown) if stats.bottom_k else None,
                "classes": _classes(arrays, channel),
            }
        )
    return layer


def _entries(arrays: dict[str, np.ndarray], prefix: str, channel: int, count: int) -> list[dict]:
    values = arrays[f"{prefix}_values"][channel, :count]
    images = arrays[f"{prefix}_images"][channel, :count]
    positions = arrays[f"{prefix}_positions"][channel, :count]
    return [
        {"image_index": int(image), "position": [int(p) for p in position], "activation": _float(value)}
        for value, image, position in zip(values, images, positions, strict=True)
    ]


def _classes(arrays: dict[str, np.ndarray], channel: int) -> list[dict] | None:
    counts = arrays["class_count"]
    if not counts.size:
        return None
    sums, maxima = arrays["class_sum"][:, channel], arrays["class_max"][:, channel]
    return [
        {
            "class": label,
            "count": int(counts[label]),
            "mean": _float(sums[label] / counts[label]) if counts[label] else None,
            "max": _float(maxima[label]) if counts[label] else None,
        }
        for label in range(counts.size)
    ]


def _check_finite(stats: LayerStats) -> None:
    if stats.channels is None:
        return
    finite = torch.isfinite(stats.sum) & torch.isfinite(stats.sum_squares)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"non-finite activations (NaN or inf) in channels {bad[:10]}: the model's output is broken")


def _float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True))
