"""LayerStats: what the activation index keeps about one layer, per channel, over many images.

Per channel: the top-k images by the channel's largest activation in the image (value, image,
position), the bottom-k by the smallest where the layer can be negative, the sum and sum of
squares of every activation (positions x images) for the mean and std, a histogram with fixed
bins (fraction positive, quantiles: worker/core/index/histogram.py) and, where images have
labels, per class the sum, count and max of each image's largest activation. Also the image whose
mean over the map is largest (the value a `channel` objective of activation maximization scores).

Every part is chosen so that shards merge exactly: rankings under a total order
(worker/core/index/ranking.py), counts that add, sums in float64 (equal across shard splits
to float64 rounding, i.e. far below float32's resolution), maxima. `update` runs on the
activations' device without waiting for it (image counts come from shapes; labels are read
on the host, where loaders produce them), so a GPU scan is not stalled once a batch; the checks that need values (finite activations) run
when the statistics are read out (`to_arrays`, `summary`).
"""

from __future__ import annotations

import torch

from worker.core.index import histogram
from worker.core.index.ranking import Ranked, candidates, per_image_extremes

DEFAULT_TOP_K = 64


class LayerStats:
    """Statistics of one layer. `k` top entries per channel, `bottom_k` bottom ones (0: not
    kept, for a layer that cannot be negative). The shape is fixed by the first `update` (or
    `channels` here); until then the statistics are empty and merge as the identity."""

    def __init__(self, k: int = DEFAULT_TOP_K, bottom_k: int | None = None, channels: int | None = None):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.bottom_k = self.k if bottom_k is None else int(bottom_k)
        if self.bottom_k < 0:
            raise ValueError(f"bottom_k must be >= 0, got {bottom_k}")
        self.channels: int | None = None
        self.position_dims: int | None = None
        self.images = 0  # images seen
        self.activations = 0  # activations seen per channel (positions x images)
        if channels is not None:
            self._start(channels, None, torch.device("cpu"))

    def _start(self, channels: int, dims: int | None, device: torch.device) -> None:
        self.channels, self.position_dims = int(channels), dims
        self.top = Ranked.empty(self.channels, dims or 0, device)
        self.bottom = Ranked.empty(self.channels, dims or 0, device)
        self.top_mean = Ranked.empty(self.channels, 0, device)  # k = 1, no position: a map's mean
        self.sum = torch.zeros(self.channels, dtype=torch.float64, device=device)
        self.sum_squares = torch.zeros(self.channels, dtype=torch.float64, device=device)
        self.histogram = torch.zeros(self.channels, histogram.BINS, dtype=torch.int64, device=device)
        self.class_sum = torch.zeros(0, self.channels, dtype=torch.float64, device=device)
        self.class_count = torch.zeros(0, dtype=torch.int64, device=device)
        self.class_max = torch.zeros(0, self.channels, dtype=torch.float32, device=device)

    @property
    def device(self) -> torch.device:
        return self.sum.device if self.channels is not None else torch.device("cpu")

    def _set_dims(self, dims: int) -> None:
        if self.position_dims is None:
            self.position_dims = dims
            self.top = Ranked.empty(self.channels, dims, self.device)
            self.bottom = Ranked.empty(self.channels, dims, self.device)
        elif self.position_dims != dims:
            raise ValueError(f"activations with {dims} spatial dimensions after ones with {self.position_dims}")

    def update(self, activations: torch.Tensor, image_indices, labels=None) -> None:
        """Add a batch: `activations` [N, C, H, W] (or [N, C], or [N, C, *spatial]),
        `image_indices` [N] (the images' global indices), `labels` [N] (class per image, < 0:
        unlabeled) or None."""
        x = activations.detach()
        if x.dim() < 2:
            raise ValueError(f"activations must be [N, C, ...], got shape {list(x.shape)}")
        count, channels = int(x.shape[0]), int(x.shape[1])
        spatial = tuple(int(s) for s in x.shape[2:])
        if self.channels is None:
            self._start(channels, len(spatial), x.device)
        if channels != self.channels:
            raise ValueError(f"activations have {channels} channels, the statistics {self.channels}")
        self._set_dims(len(spatial))
        self._to(x.device)
        indices = torch.as_tensor(image_indices, dtype=torch.int64).reshape(-1).to(x.device)
        if int(indices.numel()) != count:
            raise ValueError(f"{indices.numel()} image indices for {count} images")
        if count == 0:
            return
        flat = x.reshape(count, channels, -1)
        high, where = per_image_extremes(flat, spatial, largest=True)
        self.top = self.top.joined(candidates(high, where, indices)).best(self.k, descending=True)
        if self.bottom_k:
            low, where = per_image_extremes(flat, spatial, largest=False)
            self.bottom = self.bottom.joined(candidates(low, where, indices)).best(self.bottom_k, descending=False)
        means = candidates(flat.mean(dim=2), flat.new_zeros((count, channels, 0), dtype=torch.int64), indices)
        self.top_mean = self.top_mean.joined(means).best(1, descending=True)
        wide = flat.to(torch.float64, copy=True)  # a copy even from float64: squared in place
        self.sum += wide.sum(dim=(0, 2))
        self.sum_squares += wide.square_().sum(dim=(0, 2))
        del wide
        self.histogram += histogram.channel_histograms(flat)
        if labels is not None:
            self._update_classes(high, labels)
        self.images += count
        self.activations += count * int(flat.shape[2])

    def _update_classes(self, high: torch.Tensor, labels) -> None:
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1).cpu()
        if int(labels.numel()) != int(high.shape[0]):
            raise ValueError(f"{labels.numel()} labels for {high.shape[0]} images")
        labelled = torch.nonzero(labels >= 0).flatten()
        if not int(labelled.numel()):
            return
        self._grow_classes(int(labels.max()) + 1)
        classes = labels[labelled].to(high.device)
        values = high.index_select(0, labelled.to(high.device)).to(torch.float32)
        self.class_sum.index_add_(0, classes, values.to(torch.float64))
        self.class_count += torch.bincount(classes, minlength=self.class_count.numel())
        self.class_max.scatter_reduce_(0, classes[:, None].expand_as(values), values, reduce="amax")

    def _grow_classes(self, classes: int) -> None:
        extra = classes - int(self.class_count.numel())
        if extra <= 0:
            return
        device, width = self.device, self.channels
        self.class_sum = torch.cat([self.class_sum, torch.zeros(extra, width, dtype=torch.float64, device=device)])
        self.class_count = torch.cat([self.class_count, torch.zeros(extra, dtype=torch.int64, device=device)])
        lowest = torch.full((extra, width), -torch.inf, device=device)
        self.class_max = torch.cat([self.class_max, lowest])

    def _to(self, device: torch.device) -> None:
        if self.device == device:
            return
        self.top, self.bottom, self.top_mean = self.top.to(device), self.bottom.to(device), self.top_mean.to(device)
        for name in ("sum", "sum_squares", "histogram", "class_sum", "class_count", "class_max"):
            setattr(self, name, getattr(self, name).to(device))

    def merge(self, other: LayerStats) -> LayerStats:
        """The statistics of both image sets together (a new object; neither is changed).
        Exact and associative: rankings under a total order, counts and maxima; float64 sums
        associative to rounding."""
        if (self.k, self.bottom_k) != (other.k, other.bottom_k):
            raise ValueError(f"cannot merge k={self.k}/{self.bottom_k} with k={other.k}/{other.bottom_k}")
        if other.images == 0:
            return self._copy()
        if self.images == 0:
            return other._copy()
        if self.channels != other.channels or self.position_dims != other.position_dims:
            raise ValueError(
                f"cannot merge {self.channels} channels x {self.position_dims} dims "
                f"with {other.channels} x {other.position_dims}"
            )
        merged = self._copy()
        device = merged.device
        merged.top = merged.top.joined(other.top).best(self.k, descending=True)
        merged.bottom = merged.bottom.joined(other.bottom).best(self.bottom_k, descending=False)
        merged.top_mean = merged.top_mean.joined(other.top_mean).best(1, descending=True)
        merged.sum = merged.sum + other.sum.to(device)
        merged.sum_squares = merged.sum_squares + other.sum_squares.to(device)
        merged.histogram = merged.histogram + other.histogram.to(device)
        merged._grow_classes(int(other.class_count.numel()))
        classes = int(other.class_count.numel())
        merged.class_sum[:classes] += other.class_sum.to(device)
        merged.class_count[:classes] += other.class_count.to(device)
        merged.class_max[:classes] = torch.maximum(merged.class_max[:classes], other.class_max.to(device))
        merged.images += other.images
        merged.activations += other.activations
        return merged

    def _copy(self) -> LayerStats:
        copy = LayerStats(self.k, self.bottom_k)
        copy.images, copy.activations = self.images, self.activations
        if self.channels is None:
            return copy
        copy._start(self.channels, self.position_dims, self.device)
        copy.top = Ranked(self.top.values.clone(), self.top.images.clone(), self.top.positions.clone())
        copy.bottom = Ranked(self.bottom.values.clone(), self.bottom.images.clone(), self.bottom.positions.clone())
        copy.top_mean = Ranked(self.top_mean.values.clone(), self.top_mean.images.clone(), self.top_mean.positions.clone())
        for name in ("sum", "sum_squares", "histogram", "class_sum", "class_count", "class_max"):
            setattr(copy, name, getattr(self, name).clone())
        return copy

    def to_arrays(self) -> dict:
        from worker.core.index.arrays import to_arrays

        return to_arrays(self)

    @classmethod
    def from_arrays(cls, arrays) -> LayerStats:
        from worker.core.index.arrays import from_arrays

        return from_arrays(arrays)

    def summary(self, top: int | None = None, probabilities=None) -> dict:
        from worker.core.index.arrays import summary

        return summary(self, top=top, probabilities=probabilities)


def merge(first: LayerStats, second: LayerStats) -> LayerStats:
    """`first.merge(second)`: the statistics of both image sets."""
    return first.merge(second)
