"""Feeding a model only the batch sizes it accepts.

A model exported with `torch.export.export(model, (example,))` keeps the example's batch size:
it refuses any other (`expected 1, got 32`). Jobs batch freely, so every call of a model goes
through `in_accepted_batches`: a batch the model accepts is passed as it is (models that take
any batch pay nothing), another is cut into pieces of at most `max` inputs, a piece smaller than
`min` is padded by repeating its last input, and the outputs of the real inputs are
concatenated. Slices, padding and concatenation are differentiable, so gradients reach the
input exactly as in one forward pass (padded rows are dropped from the output, so they add 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

ATTRIBUTE = "glassbox_batch_sizes"  # set on a model's root module by the loader


@dataclass(frozen=True)
class BatchSizes:
    """Sizes of dim 0 of the input a model accepts: `min` to `max` (None: no upper bound)."""

    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if self.min < 1 or (self.max is not None and self.max < self.min):
            raise ValueError(f"not a batch size range: [{self.min}, {self.max}]")

    def accepts(self, size: int) -> bool:
        return self.min <= size and (self.max is None or size <= self.max)

    @property
    def any(self) -> bool:
        return self.min == 1 and self.max is None

    def to_dict(self) -> dict[str, int | None]:
        return {"min": self.min, "max": self.max}


def accepted_batch_sizes(model: nn.Module) -> BatchSizes | None:
    """What the model is known to accept; None: nothing known (any batch is tried as it is)."""
    return getattr(model, ATTRIBUTE, None)


def set_accepted_batch_sizes(model: nn.Module, sizes: BatchSizes | None) -> None:
    setattr(model, ATTRIBUTE, sizes)


def in_accepted_batches(
    model: nn.Module, x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """`forward(x)` (a tensor with x's batch dimension first), calling `forward` only on
    batches `model` accepts. Each call of `forward` is a whole forward pass of its own, so
    hooks and early stops inside it see one piece at a time."""
    sizes = accepted_batch_sizes(model)
    count = int(x.shape[0])
    if sizes is None or sizes.accepts(count) or count == 0:
        return forward(x)
    step = sizes.max if sizes.max is not None else count
    outputs = []
    for start in range(0, count, step):
        piece = x[start : start + step]
        rows = int(piece.shape[0])
        if rows < sizes.min:
            piece = torch.cat([piece, piece[-1:].expand(sizes.min - rows, *piece.shape[1:])])
        outputs.append(forward(piece)[:rows])
    return torch.cat(outputs)


def confirm_batch_sizes(
    forward: Callable[[torch.Tensor], object], example: torch.Tensor, declared: BatchSizes
) -> BatchSizes:
    """The sizes a model really takes, starting from what its archive declares, by running
    `forward` on copies of `example` (one input). torch lets sizes 1 through a declared
    minimum of 2 (it never specializes on 0/1 at run time), and a declared dynamic dimension
    may still have been specialized by the traced code: the runs settle both. The first run's
    exception propagates (the model does not run at all)."""

    def runs(size: int) -> bool:
        try:
            forward(example[:1].expand(size, *example.shape[1:]).contiguous())
        except Exception:
            return False
        return True

    low = declared.min
    if low > 1 and runs(1):
        low = 1
    else:
        forward(example[:1].expand(low, *example.shape[1:]).contiguous())
    high = declared.max
    if (high is None or high > low) and not runs(low + 1):
        high = low
    return BatchSizes(low, high)
