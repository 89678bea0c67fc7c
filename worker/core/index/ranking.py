"""Deterministic top-k: the k best (image, position, value) per channel under a total order.

An index is built in shards whose results are merged, and batch sizes differ between runs;
the top-k must not depend on either. `torch.topk` breaks ties as its kernel happens to, so
the order here is total and explicit: value (descending for the top, ascending for the
bottom), then image index ascending, then position (y, x, ...) ascending. A selection under a
total order is exact and associative: the best k of (best k of A) + B are the best k of A + B,
whatever the split. Implemented as stable sorts from the least significant key to the most
(a lexicographic sort), on the device, over [C, k + N] candidates: a few small sorts a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Ranked:
    """Per channel, the kept entries in rank order: values [C, m] (float32), images [C, m]
    (int64, global image index), positions [C, m, D] (int64 coordinates in the layer's map;
    D = 0 for a vector layer). m <= k is the same for every channel (each image is one
    candidate per channel), and is below k only while fewer than k images were seen."""

    values: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor

    @classmethod
    def empty(cls, channels: int, dims: int, device: torch.device | str = "cpu") -> Ranked:
        return cls(
            torch.empty(channels, 0, device=device),
            torch.empty(channels, 0, dtype=torch.int64, device=device),
            torch.empty(channels, 0, dims, dtype=torch.int64, device=device),
        )

    def to(self, device: torch.device | str) -> Ranked:
        return Ranked(self.values.to(device), self.images.to(device), self.positions.to(device))

    def joined(self, other: Ranked) -> Ranked:
        return Ranked(
            torch.cat([self.values, other.values.to(self.values.device)], dim=1),
            torch.cat([self.images, other.images.to(self.images.device)], dim=1),
            torch.cat([self.positions, other.positions.to(self.positions.device)], dim=1),
        )

    def best(self, keep: int, descending: bool) -> Ranked:
        """The first `keep` entries per channel in the total order."""
        channels, count = self.values.shape
        order = torch.arange(count, device=self.values.device).expand(channels, count)
        keys = [self.positions[:, :, d] for d in reversed(range(self.positions.shape[2]))] + [self.images]
        for key in keys:
            order = order.gather(1, torch.sort(key.gather(1, order), dim=1, stable=True).indices)
        by_value = torch.sort(self.values.gather(1, order), dim=1, descending=descending, stable=True).indices
        order = order.gather(1, by_value)[:, :keep]
        dims = self.positions.shape[2]
        return Ranked(
            self.values.gather(1, order),
            self.images.gather(1, order),
            self.positions.gather(1, order[:, :, None].expand(-1, -1, dims)),
        )


def per_image_extremes(
    flat: torch.Tensor, spatial: tuple[int, ...], largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """From activations [N, C, L] (L = the map's positions, row-major), each image's largest
    (or smallest) value per channel [N, C] and its coordinates [N, C, D]. On ties within an
    image torch.max/min return the first index, i.e. the smallest (y, x): the order above."""
    values, where = flat.max(dim=2) if largest else flat.min(dim=2)
    coordinates = []
    for size in reversed(spatial):
        coordinates.append(where % size)
        where = where // size
    if not coordinates:
        return values, where.new_zeros((*values.shape, 0))
    return values, torch.stack(coordinates[::-1], dim=2)


def candidates(values: torch.Tensor, positions: torch.Tensor, images: torch.Tensor) -> Ranked:
    """One batch's per-image extremes ([N, C], [N, C, D], images [N]) as per-channel entries."""
    count, channels = values.shape
    return Ranked(
        values.T.to(torch.float32),
        images[None, :].expand(channels, count),
        positions.transpose(0, 1),
    )
