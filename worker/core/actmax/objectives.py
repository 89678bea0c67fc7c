"""What to maximize, from a layer's activation [N, C, *spatial] (or [N, C]).

Every objective is batched: image i of the batch serves unit `image_units[i]`, so several units
render in one optimization. `value(act)` is each image's own objective [N] (maximized, and what
the history and result report); `per_unit(act)` is every requested unit on every image [B, U]
(for the strongest dataset example); `scores(act)` all the layer's units on each image [N, C]
(is the rendered unit the top unit of its layer?), None where units mean nothing (layer,
direction).

- neuron: one channel at one position (act[i, u, y, x]); on a [N, C] layer the unit itself;
- channel: the mean of a feature map;
- class: a logit (a channel of the model's last layer);
- layer: DeepDream, the mean squared activation of the whole layer;
- direction: the dot product of the channel vector with `vector`, at `position` or averaged
  over positions (Lucid's `direction`).
`Diversity` (Lucid's `diversity`) is a penalty [N]: the cosine similarity of each image's Gram
matrix with those of the other images of its unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class Objective:
    def __init__(
        self,
        type: str,
        layer: str,
        image_units: Sequence[int] | None = None,
        *,
        position: Sequence[int] | None = None,
        vector: Sequence[float] | None = None,
        n: int | None = None,
        softmax_weight: float = 0.0,
        softmax_start: float = 0.0,
    ):
        if type not in ("neuron", "channel", "class", "layer", "direction"):
            raise ValueError(f"unknown objective type {type!r}")
        self.type = type
        self.layer = layer
        self.position = list(position) if position is not None else None
        self.vector = torch.tensor(list(vector), dtype=torch.float32) if vector is not None else None
        if type in ("neuron", "channel", "class"):
            if not image_units:
                raise ValueError(f"a {type} objective needs units")
            self.image_units = [int(u) for u in image_units]
            self.unit_ids = list(dict.fromkeys(self.image_units))  # distinct, in order
        else:
            if n is None:
                raise ValueError(f"a {type} objective needs the number of images n")
            self.image_units = [0] * n
            self.unit_ids = [0]
        if type == "direction" and self.vector is None:
            raise ValueError("a direction objective needs a vector")
        self.softmax_weight = float(softmax_weight) if type == "class" else 0.0
        self.softmax_start = float(softmax_start)
        self._index: dict[torch.device, torch.Tensor] = {}

    @property
    def n(self) -> int:
        return len(self.image_units)

    @property
    def has_units(self) -> bool:
        return self.type in ("neuron", "channel", "class")

    def groups(self) -> list[int]:
        """For each image, the index of its unit in `unit_ids` (images of one unit share it)."""
        where = {u: i for i, u in enumerate(self.unit_ids)}
        return [where[u] for u in self.image_units]

    def _units_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._index:
            self._index[device] = torch.tensor(self.image_units, dtype=torch.long, device=device)
        return self._index[device]

    def _at_position(self, act: torch.Tensor) -> torch.Tensor:
        """[N, C] at `position` (neuron, direction) from [N, C, *spatial]."""
        if act.dim() == 2:
            return act
        if self.position is None or len(self.position) != act.dim() - 2:
            raise ValueError(f"position {self.position} does not fit an activation of shape {list(act.shape[1:])}")
        return act[(slice(None), slice(None), *self.position)]

    def _channel_means(self, act: torch.Tensor) -> torch.Tensor:
        return act if act.dim() == 2 else act.flatten(2).mean(2)

    def scores(self, act: torch.Tensor) -> torch.Tensor | None:
        if self.type == "neuron":
            return self._at_position(act)
        if self.type in ("channel", "class"):
            return self._channel_means(act)
        return None

    def value(self, act: torch.Tensor) -> torch.Tensor:
        if self.type in ("neuron", "channel", "class"):
            rows = torch.arange(act.shape[0], device=act.device)
            picked = act[rows, self._units_on(act.device)[: act.shape[0]]]  # [N, *spatial]
            if picked.dim() == 1:
                return picked
            if self.type == "neuron":
                return picked[(slice(None), *self.position)]
            return picked.flatten(1).mean(1)
        if self.type == "layer":
            return act.pow(2).flatten(1).mean(1)
        vector = self.vector.to(act.device, act.dtype)
        if act.dim() == 2 or self.position is not None:
            return self._at_position(act) @ vector
        return torch.einsum("nc...,c->n...", act, vector).flatten(1).mean(1)

    def bonus(self, act: torch.Tensor, progress: float) -> torch.Tensor | None:
        """An extra term [N] maximized with the objective (not reported): for class objectives,
        `softmax_weight` x the class's log-softmax once `progress` (0..1) reaches
        `softmax_start`: it keeps the class the top one, pushing the other logits down where they
        rise with it."""
        if not self.softmax_weight or progress < self.softmax_start:
            return None
        logits = self._channel_means(act)
        rows = torch.arange(act.shape[0], device=act.device)
        return self.softmax_weight * torch.log_softmax(logits, 1)[rows, self._units_on(act.device)[: act.shape[0]]]

    def per_unit(self, act: torch.Tensor) -> torch.Tensor:
        """[B, U]: each of `unit_ids` on each image of `act` (for units-less objectives U=1)."""
        if not self.has_units:
            return self.value(act)[:, None]  # layer, direction: the same for every image
        ids = torch.tensor(self.unit_ids, dtype=torch.long, device=act.device)
        table = self.scores(act)
        return table.index_select(1, ids)

    def describe(self) -> dict:
        out = {"type": self.type, "layer": self.layer}
        if self.has_units:
            out["units"] = self.unit_ids
        if self.position is not None:
            out["position"] = self.position
        if self.vector is not None:
            out["vector"] = self.vector.tolist()
        return out


class Diversity:
    """Lucid's diversity term, within each unit's images: the penalty of image i is the sum of
    the cosine similarities of its Gram matrix with those of the other images of its unit,
    divided by the unit's image count."""

    def __init__(self, weight: float, groups: Sequence[int]):
        self.weight = float(weight)
        self.groups = list(groups)
        self._mask: dict[torch.device, torch.Tensor] = {}

    @property
    def active(self) -> bool:
        return self.weight > 0 and len(self.groups) > len(set(self.groups))

    def _same_unit(self, device: torch.device) -> torch.Tensor:
        if device not in self._mask:
            g = torch.tensor(self.groups, device=device)
            same = (g[:, None] == g[None, :]).float()
            same.fill_diagonal_(0.0)
            counts = (g[:, None] == g[None, :]).float().sum(1, keepdim=True)
            self._mask[device] = same / counts
        return self._mask[device]

    def penalty(self, act: torch.Tensor) -> torch.Tensor:
        if act.dim() == 2:
            features = act
        else:
            flat = act.flatten(2)  # [N, C, P]
            features = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)  # Gram, [N, C*C]
        features = F.normalize(features, dim=1, eps=1e-10)
        similarity = features @ features.T
        return self.weight * (similarity * self._same_unit(act.device)).sum(1)


def make_objective(
    type: str,
    layer: str,
    units: Sequence[int] | None,
    *,
    images_per_unit: int = 1,
    position: Sequence[int] | None = None,
    vector: Sequence[float] | None = None,
    softmax_weight: float = 0.0,
    softmax_start: float = 0.0,
) -> Objective:
    """The batch is unit-major: [u0 image 0, u0 image 1, ..., u1 image 0, ...]."""
    if type in ("neuron", "channel", "class"):
        image_units = [int(u) for u in units or [] for _ in range(images_per_unit)]
        return Objective(
            type, layer, image_units, position=position, vector=vector,
            softmax_weight=softmax_weight, softmax_start=softmax_start,
        )  # fmt: skip
    return Objective(type, layer, None, position=position, vector=vector, n=images_per_unit)
