"""Activation indexes as jobs use them: find the index of a layer for the job's model and
dataset, load it from the blob store, or build it here on first use and publish it for the
next job (a deconvnet job scans its dataset anyway: keeping what it learns costs nothing).

The index ids and records are service/indexes.py's; the statistics worker/core/index's.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from service.indexes import INDEX_FILE, IndexCatalog, dataset_identity, index_id, index_record, model_identity
from worker.context import JobContext
from worker.core.index import DEFAULT_TOP_K, LayerStats, scan
from worker.datasets import ImageSet
from worker.kinds.activation_index.files import stats_bytes, stats_from_bytes
from worker.scan_reader import prepared_batches


@dataclass
class LayerIndex:
    stats: LayerStats
    record: dict[str, Any]
    built_now: bool  # built by this job (on first use), not read


class IndexAccess:
    """The indexes of one job's model and dataset."""

    def __init__(self, ctx: JobContext, model_record: dict[str, Any], dataset: str):
        self.ctx = ctx
        self.model_record = model_record
        self.dataset = dataset
        self.catalog = IndexCatalog(ctx.runs.redis, ctx.runs.keys)
        _, dataset_record = ctx.datasets.catalog.find(ctx.tenant, dataset)
        self._identity = (model_identity(model_record, ctx.model), dataset_identity(dataset_record))

    def id(self, layer: str) -> str:
        return index_id(*self._identity, layer, self.model_record["input"])

    def find(self, layer: str, k: int) -> LayerIndex | None:
        """The layer's index if one keeps at least `k` per channel."""
        record = self.catalog.get(self.ctx.tenant, self.id(layer))
        if record is None or record["k"] < k:
            return None
        return LayerIndex(stats_from_bytes(self.ctx.files.store.get_bytes(record["file"])), record, built_now=False)

    def build_here(self, model, images: ImageSet, layer: str, k: int, batch_size: int, progress=None) -> LayerIndex:
        """Scan the dataset in this job (one layer, at least DEFAULT_TOP_K kept) and publish it."""
        k = max(k, DEFAULT_TOP_K)
        started, done = time.perf_counter(), 0

        def counted(batches):
            nonlocal done
            for batch in batches:
                yield batch
                done += len(batch[1])
                if progress is not None:
                    progress(done / max(1, len(images)))

        batches = prepared_batches(images, 0, len(images), batch_size, self.model_record["input"])
        stats = scan(model, counted(batches), [layer], self.ctx.device, check=self.ctx.check, k=k)[layer]
        record = self.publish(layer, stats, time.perf_counter() - started)
        return LayerIndex(stats, record, built_now=True)

    def publish(self, layer: str, stats: LayerStats, seconds: float, job: str | None = None) -> dict[str, Any]:
        tenant, index = self.ctx.tenant, self.id(layer)
        prefix = f"indexes/{tenant}/{index}/{secrets.token_hex(6)}"
        self.catalog.leases.hold(prefix, 3600)
        info = self.ctx.files.store.put_bytes(f"{prefix}/{INDEX_FILE}", stats_bytes(stats))
        shape = next((e["output_shape"] for e in self.model_record["layers"] if e["name"] == layer), [])
        record = index_record(
            index=index, tenant=tenant, model=self.ctx.model, dataset=self.dataset, layer=layer, shape=list(shape),
            k=stats.k, images=stats.images, prefix=prefix, size=info.size, sha256=info.sha256,
            job=job or self.ctx.job_id, seconds=seconds,
        )  # fmt: skip
        self.catalog.publish(tenant, record)
        return record
