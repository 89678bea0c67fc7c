"""The index's histogram: fixed bins on the float32 bit pattern, every value in the bin whose edges
hold it, and quantiles within the stated bound of numpy's exact ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worker.core.index import LayerStats
from worker.core.index import histogram as hist


def test_every_float32_lands_in_the_bin_whose_edges_contain_it():
    rng = np.random.default_rng(5)
    lower, upper = hist.bin_edges()
    edges = np.concatenate([lower, upper])
    edges = edges[np.abs(edges) <= np.finfo(np.float32).max].astype(np.float32)
    top = np.finfo(np.float32).max
    magnitudes = rng.standard_normal(5000) * 10.0 ** rng.integers(-40, 38, 5000).astype(np.float64)
    values = np.concatenate([[0.0, -0.0, 1e-45, -1e-45, top, -top], edges, magnitudes]).astype(np.float32)
    # every edge and the floats either side of it
    values = np.concatenate([values, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf))])
    values = values[np.isfinite(values)]
    bins = hist.bin_indices(torch.from_numpy(values)).numpy()
    v = values.astype(np.float64)
    positive, negative, zero = v > 0, v < 0, v == 0
    assert (bins[zero] == hist.ZERO_BIN).all()
    assert ((lower[bins] < v) & (v <= upper[bins]))[positive].all()
    assert ((lower[bins] <= v) & (v < upper[bins]))[negative].all()
    assert np.all(np.diff(lower) >= 0) and np.array_equal(upper[:-1], lower[1:])
    assert lower[0] == -(2.0**128) and upper[-1] == 2.0**128  # every float32
    magnitude = np.minimum(np.abs(lower), np.abs(upper))[hist.ZERO_BIN + 2 :]
    assert np.all((upper - lower)[hist.ZERO_BIN + 2 :] <= magnitude * hist.RELATIVE_ERROR)
    assert upper[hist.ZERO_BIN + 1] == hist.ABSOLUTE_ERROR  # the tiny bin
    # the per-channel counting agrees with the per-value bins
    split = torch.from_numpy(np.stack([values, -values])[None])  # [1, 2 channels, L]
    counts = hist.channel_histograms(split).numpy()
    for channel in range(2):
        expected = np.bincount(hist.bin_indices(split[0, channel]).numpy(), minlength=hist.BINS)
        assert np.array_equal(counts[channel], expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_quantiles_are_within_the_stated_bound_of_numpys(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(0.0, 3.0, size=(3, 20000)).astype(np.float32)
    values[0] *= np.where(rng.random(20000) < 0.4, -1, 1).astype(np.float32)  # both signs
    values[1][rng.random(20000) < 0.6] = 0  # a ReLU-like channel: mostly exact zeros
    values[2] *= np.float32(1e-9)  # tiny magnitudes
    stats = LayerStats(3, 3)
    stats.update(torch.from_numpy(values.T.copy()), np.arange(20000))
    points = np.array([0.0, 0.001, 0.1, 0.25, 0.5, 0.6, 0.9, 0.999, 1.0])
    summary = stats.summary(probabilities=points)
    for c in range(3):
        exact = np.sort(values[c].astype(np.float64))
        for p in points:
            estimate = summary["channels"][c]["quantiles"][f"{p:g}"]
            rank = (exact.size - 1) * p
            neighbours = exact[int(math.floor(rank))], exact[min(int(math.floor(rank)) + 1, exact.size - 1)]
            bound = max(abs(neighbours[0]), abs(neighbours[1])) * hist.RELATIVE_ERROR + hist.ABSOLUTE_ERROR
            assert abs(estimate - np.quantile(exact, p)) <= bound, (c, p)
    assert summary["channels"][1]["quantiles"]["0.5"] == 0.0  # inside the zeros: exact


# ------------------------------------------------------------------------------------------
# capture and scan


