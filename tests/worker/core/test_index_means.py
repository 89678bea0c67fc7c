"""The index's per-channel best image by the map's mean (what a `channel` objective scores):
equal to a brute force, with ties to the lowest image, and independent of the shard split."""

from __future__ import annotations

import numpy as np
import torch

from worker.core.index import LayerStats, from_arrays, merge, to_arrays


def test_top_mean_is_the_image_with_the_largest_map_mean():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(30, 5, 4, 4, generator=generator)
    maps[7, 2] = maps[3, 2]  # a tie on channel 2: image 3 must win
    maps[3, 2] += 5.0
    maps[7, 2] += 5.0
    whole = LayerStats(k=4)
    whole.update(maps, torch.arange(30))
    means = maps.flatten(2).mean(2).numpy()
    expected_images = [int(np.argmax(means[:, c])) for c in range(5)]  # argmax: the first (lowest) on ties
    assert whole.top_mean.images[:, 0].tolist() == expected_images and expected_images[2] == 3
    np.testing.assert_allclose(whole.top_mean.values[:, 0].numpy(), means.max(axis=0), rtol=1e-6)
    parts = []
    for start, stop in ((0, 11), (11, 12), (12, 30)):
        part = LayerStats(k=4)
        part.update(maps[start:stop], torch.arange(start, stop))
        parts.append(from_arrays(to_arrays(part)))
    merged = merge(merge(parts[2], parts[0]), parts[1])
    assert torch.equal(merged.top_mean.images, whole.top_mean.images)
    assert torch.equal(merged.top_mean.values, whole.top_mean.values)
