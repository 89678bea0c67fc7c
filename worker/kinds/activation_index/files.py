"""An index's statistics as one .npz file (plain arrays, loaded with allow_pickle=False)."""

from __future__ import annotations

import io

import numpy as np

from worker.core.index import LayerStats, from_arrays, to_arrays


def stats_bytes(stats: LayerStats) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **to_arrays(stats))
    return buffer.getvalue()


def stats_from_bytes(data: bytes) -> LayerStats:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return from_arrays({name: arrays[name] for name in arrays.files})
