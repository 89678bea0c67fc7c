"""The models and rows the interaction tests play with: a 5-variable layout with one-hot
categoricals (`GROUPS`: the groups, not the columns, are the players), small MLPs, and models
whose interactions are known in closed form (`Product`, `Additive`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

# 5 variables, 3 of them categoricals (one-hot groups): the groups, not the columns, are players
GROUPS = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10]]
WIDTH = 11


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Small batches: one thread avoids OpenMP's spin-waits on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_hot_rows(count: int, seed: int) -> torch.Tensor:
    """Rows of the GROUPS layout: one-hot categoricals, normal numerics; float64."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((count, WIDTH))
    for columns in GROUPS:
        if len(columns) > 1:
            rows[np.arange(count), rng.choice(columns, count)] = 1.0
        else:
            rows[:, columns[0]] = rng.normal(0, 1.5, count)
    return torch.from_numpy(rows)


def mlp(activation: type[nn.Module] = nn.Tanh, seed: int = 0, width: int = WIDTH) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(width, 16), activation(), nn.Linear(16, 8), activation(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).double().eval()


class Product(nn.Module):
    """f(x) = product of the chosen columns."""

    def __init__(self, columns: list[int]):
        super().__init__()
        self.columns = columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.columns].prod(dim=1)


class Additive(nn.Module):
    """f(x) = sum over variables of a nonlinear function of that variable's columns alone."""

    def __init__(self, groups: list[list[int]], seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.groups = groups
        self.weights = [torch.randn(len(g), generator=generator, dtype=torch.float64) for g in groups]

    def parts(self, x: torch.Tensor) -> torch.Tensor:  # [n, V]
        return torch.stack(
            [torch.tanh(2 * x[:, g] @ w) + (x[:, g] @ w) ** 2 for g, w in zip(self.groups, self.weights)], 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x).sum(dim=1)
