"""The activation index's core: per-layer statistics over a dataset, mergeable across shards.

- stats.py: LayerStats (top/bottom-k, mean/std, fraction positive, histogram, per class),
  `update` per batch and an exact, associative `merge`;
- ranking.py: the total order that makes top-k independent of shards and batch sizes;
- histogram.py: fixed log-linear bins on the float32 bit pattern, quantiles and their bound;
- arrays.py: to/from plain numpy arrays (one .npz, no pickle) and the JSON summary;
- scan.py: one truncated forward per batch, every requested layer updated.

Pure PyTorch: the fan-out over workers, storage and the HTTP API live elsewhere.
"""

from worker.core.index.arrays import from_arrays, summary, to_arrays
from worker.core.index.scan import can_be_negative, scan
from worker.core.index.stats import DEFAULT_TOP_K, LayerStats, merge

__all__ = ["DEFAULT_TOP_K", "LayerStats", "can_be_negative", "from_arrays", "merge", "scan", "summary", "to_arrays"]
