"""Loaded models kept in memory (and on the device) between jobs, least recently used first out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


def module_bytes(module: nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class LoadedModel:
    module: nn.Module
    record: dict[str, Any]  # the catalog record: input contract, labels, layers
    bytes: int = field(default=0)


class ModelCache:
    """`get(key, load)` returns the cached model or loads it; evicts the least recently used
    models while the total exceeds `budget_bytes` (a model larger than the budget is still
    served, alone)."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.hits = 0

    def get(self, key: str, load: Callable[[], LoadedModel]) -> LoadedModel:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                self.hits += 1
                return self._models[key]
        loaded = load()
        loaded.bytes = module_bytes(loaded.module)
        with self._lock:
            self.loads += 1
            self._models[key] = loaded
            self._models.move_to_end(key)
            while len(self._models) > 1 and self.total_bytes > self.budget_bytes:
                self._models.popitem(last=False)
        return loaded

    @property
    def total_bytes(self) -> int:
        return sum(m.bytes for m in self._models.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._models)
