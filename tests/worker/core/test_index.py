"""The activation index's core (worker/core/index), against brute force, without Redis.

Every statistic is compared with a literal re-implementation over all activations in numpy /
plain Python (sorted tuples for the top-k order, np.mean/np.std/np.quantile for the rest).
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

from worker.core.batching import BatchSizes, set_accepted_batch_sizes
from worker.core.index import LayerStats, can_be_negative, from_arrays, merge, scan
from worker.core.probe import capture_activation, capture_activations
from worker.models.shapes import load_shapes_cnn, preprocess, shapes_val

# ------------------------------------------------------------------------------------------
# brute force


def brute_force(batches, k, bottom_k):
    """Expected arrays from batches of (activations [N, C, *S] numpy, indices [N], labels)."""
    channels = batches[0][0].shape[1]
    tops, bottoms = defaultdict(list), defaultdict(list)
    values = defaultdict(list)
    class_maxima = defaultdict(list)
    for acts, indices, labels in batches:
        spatial = acts.shape[2:]
        for n in range(acts.shape[0]):
            for c in range(channels):
                flat = acts[n, c].ravel()
                high, low = int(np.argmax(flat)), int(np.argmin(flat))  # first occurrence
                tops[c].append((flat[high], int(indices[n]), tuple(int(v) for v in np.unravel_index(high, spatial))))
                bottoms[c].append((flat[low], int(indices[n]), tuple(int(v) for v in np.unravel_index(low, spatial))))
            if labels is not None and labels[n] >= 0:
                class_maxima[int(labels[n])].append(acts[n].reshape(channels, -1).max(axis=1))
        for c in range(channels):
            values[c].append(acts[:, c].ravel())
    expected = {"top": [], "bottom": [], "values": []}
    for c in range(channels):
        expected["top"].append(sorted(tops[c], key=lambda e: (-e[0], e[1], e[2]))[:k])
        expected["bottom"].append(sorted(bottoms[c], key=lambda e: (e[0], e[1], e[2]))[:bottom_k])
        expected["values"].append(np.concatenate(values[c]).astype(np.float64))
    expected["classes"] = {label: np.stack(rows) for label, rows in class_maxima.items()}
    return expected


def assert_matches_brute_force(stats: LayerStats, batches, k, bottom_k):
    expected = brute_force(batches, k, bottom_k)
    arrays = stats.to_arrays()
    for prefix in ("top", "bottom"):
        for c, entries in enumerate(expected[prefix]):
            parts = [arrays[f"{prefix}_{part}"][c].tolist() for part in ("values", "images", "positions")]
            got = [(v, i, tuple(p)) for v, i, p in zip(*parts, strict=True)]
            assert got == [(float(v), i, p) for v, i, p in entries], (prefix, c)
    summary = stats.summary()
    for c, everything in enumerate(expected["values"]):
        channel = summary["channels"][c]
        assert channel["mean"] == pytest.approx(everything.mean(), rel=1e-12, abs=1e-12)
        assert channel["std"] == pytest.approx(everything.std(), rel=1e-9, abs=1e-9)
        assert channel["fraction_positive"] == (everything > 0).mean()
        assert channel["max"] == everything.max()
    assert arrays["activations"] == sum(b[0][:, 0].size for b in batches)
    for label, maxima in expected["classes"].items():
        for c in range(maxima.shape[1]):
            row = summary["channels"][c]["classes"][label]
            assert row["count"] == maxima.shape[0] and row["max"] == float(maxima[:, c].max())
            assert row["mean"] == pytest.approx(maxima[:, c].astype(np.float64).mean(), rel=1e-12)
    return expected


def feed(batches, k=5, bottom_k=5) -> LayerStats:
    stats = LayerStats(k, bottom_k)
    for acts, indices, labels in batches:
        stats.update(
            torch.from_numpy(acts), torch.from_numpy(indices), None if labels is None else torch.from_numpy(labels)
        )
    return stats


def tricky_batches(seed=0):
    """Three batches of different spatial sizes, 6 channels: channel 0 never activates (all
    <= 0, with exact zeros), channel 1 takes a few integer values (ties everywhere, between
    and within images), image 3 is a copy of image 0 (tied at every channel), labels with
    an unlabeled image (-1)."""
    rng = np.random.default_rng(seed)
    batches, start = [], 0
    for count, size in ((5, (4, 6)), (7, (3, 3)), (4, (5, 2))):
        acts = rng.standard_normal((count, 6, *size)).astype(np.float32) * np.float32(3.0)
        acts[:, 0] = -np.maximum(acts[:, 0], 0)
        acts[:, 1] = rng.integers(-2, 3, size=(count, *size)).astype(np.float32)
        acts[:, 2] = np.exp(acts[:, 2]).astype(np.float32)
        if start == 0:
            acts[3] = acts[0]
        labels = rng.integers(-1, 4, size=count)
        batches.append((acts, np.arange(start, start + count, dtype=np.int64), labels.astype(np.int64)))
        start += count
    return batches


# ------------------------------------------------------------------------------------------
# statistics against brute force


def test_statistics_equal_brute_force_with_ties_dead_channels_sizes_and_labels():
    batches = tricky_batches()
    stats = feed(batches, k=7, bottom_k=4)
    expected = assert_matches_brute_force(stats, batches, 7, 4)
    dead = stats.summary()["channels"][0]
    assert dead["max"] <= 0 and dead["fraction_positive"] == 0.0
    assert all(entry["activation"] <= 0 for entry in dead["top"])
    # the tie on the copied image is resolved by image index, then position
    assert any(a[0] == b[0] for a, b in zip(expected["top"][1], expected["top"][1][1:], strict=False))


def test_fewer_images_than_k_keep_them_all():
    batches = tricky_batches()[:1]
    stats = feed(batches, k=64, bottom_k=64)
    assert stats.to_arrays()["top_values"].shape == (6, 5)
    assert_matches_brute_force(stats, batches, 64, 64)


def test_vector_layer_has_empty_positions():
    rng = np.random.default_rng(1)
    batches = [
        (rng.standard_normal((n, 4)).astype(np.float32), np.arange(s, s + n), rng.integers(0, 3, n))
        for s, n in ((0, 6), (6, 9))
    ]
    stats = feed(batches, k=4, bottom_k=4)
    assert stats.to_arrays()["top_positions"].shape == (4, 4, 0)
    assert_matches_brute_force(stats, batches, 4, 4)
    assert stats.summary()["channels"][0]["top"][0]["position"] == []


class FullyConvolutional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)  # rewrites conv1's output: the capture must copy it
        self.conv2 = nn.Conv2d(5, 4, 3, stride=2)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))


def test_scan_of_a_fully_convolutional_model_over_several_image_sizes():
    torch.manual_seed(0)
    model = FullyConvolutional().eval()
    rng = np.random.default_rng(2)
    images = [
        torch.from_numpy(rng.standard_normal((n, 3, h, w)).astype(np.float32))
        for n, h, w in ((3, 9, 11), (4, 7, 7), (2, 12, 8))
    ]
    starts = np.cumsum([0] + [len(x) for x in images])
    labels = [rng.integers(0, 2, len(x)) for x in images]
    batches = [
        (x, torch.arange(starts[i], starts[i] + len(x)), torch.from_numpy(labels[i])) for i, x in enumerate(images)
    ]
    stats = scan(model, batches, ["conv1", "relu2"], "cpu", k=6)
    assert stats["relu2"].bottom_k == 0 and stats["conv1"].bottom_k == 6
    with torch.no_grad():
        conv1 = [model.conv1(x).numpy() for x in images]
        relu2 = [model(x).numpy() for x in images]
    for name, acts, bottom_k in (("conv1", conv1, 6), ("relu2", relu2, 0)):
        expected = [(a, np.arange(starts[i], starts[i] + len(a)), labels[i]) for i, a in enumerate(acts)]
        assert_matches_brute_force(stats[name], expected, 6, bottom_k)


# ------------------------------------------------------------------------------------------
# shards, merge, serialization


def shard_stats(batches, cuts, batch_size, k=5):
    """Stats per shard: images (of equal-size batches) split at `cuts`, re-batched by batch_size."""
    acts = np.concatenate([b[0] for b in batches])
    indices = np.concatenate([b[1] for b in batches])
    labels = np.concatenate([b[2] for b in batches])
    shards = []
    for start, stop in zip([0, *cuts], [*cuts, len(acts)], strict=True):
        pieces = [
            (
                acts[i : min(i + batch_size, stop)],
                indices[i : min(i + batch_size, stop)],
                labels[i : min(i + batch_size, stop)],
            )
            for i in range(start, stop, batch_size)
        ]
        shards.append(feed(pieces, k=k, bottom_k=k) if pieces else LayerStats(k, k))
    return shards


def assert_same(first: dict, second: dict):
    assert first.keys() == second.keys()
    for name in first:
        if name in ("sum", "sum_squares", "class_sum"):
            np.testing.assert_allclose(first[name], second[name], rtol=1e-12, atol=1e-12)
        else:
            assert first[name].dtype == second[name].dtype and np.array_equal(first[name], second[name]), name


def equal_size_batches(seed=3):
    rng = np.random.default_rng(seed)
    acts = rng.integers(-3, 4, size=(40, 3, 4, 4)).astype(np.float32) * np.float32(0.5)
    acts[10:20] = acts[0:10]  # duplicates: ties between images everywhere
    return [(acts, np.arange(40), rng.integers(0, 5, 40))]


def test_shard_split_and_batch_size_do_not_change_the_index():
    batches = equal_size_batches()
    whole = feed(batches).to_arrays()
    assert_matches_brute_force(feed(batches), batches, 5, 5)
    for cuts, batch_size in (([], 40), ([13], 3), ([1, 2, 30], 7), ([20, 20, 25], 1), ([39], 16)):
        shards = shard_stats(batches, cuts, batch_size)
        merged = shards[0]
        for shard in shards[1:]:
            merged = merge(merged, shard)
        reversed_order = shards[-1]
        for shard in reversed(shards[:-1]):
            reversed_order = merge(shard, reversed_order)
        assert_same(whole, merged.to_arrays())
        assert_same(whole, reversed_order.to_arrays())


def test_merge_is_associative_and_empty_is_its_identity():
    a, b, c = shard_stats(equal_size_batches(4), [11, 27], 5)
    left = merge(merge(a, b), c).to_arrays()
    right = merge(a, merge(b, c)).to_arrays()
    assert_same(left, right)
    assert_same(merge(LayerStats(5, 5), a).to_arrays(), a.to_arrays())
    assert_same(merge(a, LayerStats(5, 5)).to_arrays(), a.to_arrays())
    with pytest.raises(ValueError, match="k="):
        merge(a, LayerStats(6, 5))


def test_round_trip_through_npz_without_pickle(tmp_path):
    stats = feed(tricky_batches(), k=7, bottom_k=4)
    arrays = stats.to_arrays()
    assert all(array.dtype.kind in "if" for array in arrays.values())
    path = tmp_path / "index.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as loaded:
        restored = from_arrays(loaded)
    assert_same(arrays, restored.to_arrays())
    assert json.dumps(restored.summary()) == json.dumps(stats.summary())
    # a restored shard keeps merging like the original
    other = feed(tricky_batches(seed=9)[:1], k=7, bottom_k=4)
    assert_same(merge(restored, other).to_arrays(), merge(stats, other).to_arrays())
    empty = LayerStats(3, 0)
    assert from_arrays(empty.to_arrays()).channels is None


def test_non_finite_activations_are_refused_when_read():
    stats = LayerStats(2, 2)
    stats.update(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        stats.to_arrays()


# ------------------------------------------------------------------------------------------
# histogram and quantiles


def test_multi_layer_scan_equals_single_layer_scans_on_shapes_cnn():
    model = load_shapes_cnn()
    images, labels = shapes_val()
    x = preprocess(images[:120])
    batches = [
        (x[i : i + n], torch.arange(i, i + n), torch.from_numpy(labels[i : i + n]))
        for i, n in ((0, 50), (50, 33), (83, 37))
    ]
    layers = ["features.3", "features.6", "features.10", "classifier.0"]
    together = scan(model, batches, layers, "cpu", k=8)
    for layer in layers:
        alone = scan(model, batches, [layer], "cpu", k=8)[layer]
        assert_same(together[layer].to_arrays(), alone.to_arrays())
    with torch.no_grad():
        expected = [(model.features[:11](b[0]).numpy(), b[1].numpy(), b[2].numpy()) for b in batches]
    assert_matches_brute_force(together["features.10"], expected, 8, 8)


def test_capture_activations_copies_outputs_later_layers_rewrite_in_place():
    torch.manual_seed(1)
    model = FullyConvolutional().eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        both = capture_activations(model, x, ["conv2", "conv1"])
        assert torch.equal(both["conv1"], capture_activation(model, x, "conv1"))
        assert torch.equal(both["conv2"], capture_activation(model, x, "conv2"))
        assert (both["conv1"] < 0).any()  # the ReLU after it did not reach the copy


class OnlyFour(nn.Module):
    """Refuses any batch but 4, like an archive exported with a fixed batch."""

    def __init__(self):
        super().__init__()
        self.inner = FullyConvolutional()

    def forward(self, x):
        if x.shape[0] != 4:
            raise RuntimeError(f"expected 4, got {x.shape[0]}")
        return self.inner(x)


def test_capture_activations_feeds_a_fixed_batch_model_in_pieces():
    torch.manual_seed(2)
    model = OnlyFour().eval()
    set_accepted_batch_sizes(model, BatchSizes(4, 4))
    x = torch.randn(7, 3, 6, 6)
    with torch.no_grad():
        got = capture_activations(model, x, ["inner.conv1", "inner.conv2"])
        for layer in ("inner.conv1", "inner.conv2"):
            assert torch.equal(got[layer], capture_activation(model, x, layer))
    assert got["inner.conv2"].shape[0] == 7


def test_scan_calls_check_between_batches_and_stops_when_it_raises():
    model = FullyConvolutional().eval()
    fed = []

    def batches():
        for i in range(5):
            fed.append(i)
            yield torch.randn(2, 3, 5, 5), [2 * i, 2 * i + 1], None

    class Canceled(Exception):
        pass

    calls = []

    def check():
        calls.append(len(fed))
        if len(calls) == 2:
            raise Canceled()

    with pytest.raises(Canceled):
        scan(model, batches(), ["conv2"], "cpu", check=check)
    assert calls == [1, 2] and fed == [0, 1]


def test_a_dataloader_feeds_the_scan_like_plain_batches():
    torch.manual_seed(3)
    model = FullyConvolutional().eval()
    images, labels = torch.randn(19, 3, 6, 6), torch.randint(0, 3, (19,))
    dataset = [(images[i], i, labels[i]) for i in range(19)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=5)
    plain = [(images[i : i + 5], range(i, min(i + 5, 19)), labels[i : i + 5]) for i in range(0, 19, 5)]
    got = scan(model, loader, ["conv1", "relu2"], "cpu", k=4)
    expected = scan(model, plain, ["conv1", "relu2"], "cpu", k=4)
    for layer in ("conv1", "relu2"):
        assert_same(got[layer].to_arrays(), expected[layer].to_arrays())


def test_bottom_is_kept_only_where_the_layer_can_be_negative():
    model = load_shapes_cnn()
    layers = ("features.0", "features.1", "features.2", "classifier.1")
    assert [can_be_negative(model, name) for name in layers] == [True, False, True, False]
