"""Activation indexes as records: what is indexed, where its file is, what it cost.

An index is the activation statistics of one layer of one model over one dataset (see
worker/core/index), kept per (model content, dataset content, layer, input contract) and per
tenant: never shared across tenants, deleted with its model or dataset. The statistics are one
.npz file in the blob store (`indexes/{tenant}/{id}/{token}/stats.npz`); Redis keeps the record
(`ns:indexes:{tenant}`, a hash id -> JSON) and, while one is being built, a lock naming the job
that builds it (`ns:index-build:{tenant}:{id}`), so that a second request waits for the first.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from service.derived_records import DerivedRecords

INDEX_FILE = "stats.npz"


def model_identity(record: dict[str, Any], model_ref: str) -> str:
    """What the model computes with: an upload's bytes, or a built-in's or torchvision's name
    with its weights (the reference's query says which)."""
    if record.get("source") == "upload":
        return f"upload:{record.get('sha256') or record.get('prefix') or record.get('bytes')}"
    return f"{record.get('source')}:{model_ref}"


def dataset_identity(record: dict[str, Any]) -> str:
    files = [f.get("sha256") for f in record.get("files") or [] if isinstance(f, dict)]
    return json.dumps(
        [
            record.get("source"),
            record.get("id"),
            files,
            record.get("uri"),
            record.get("indexing_job"),
            record.get("count"),
        ]
    )


def index_id(model: str, dataset: str, layer: str, contract: dict[str, Any]) -> str:
    text = json.dumps([model, dataset, layer, contract], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class IndexCatalog(DerivedRecords):
    collection = "indexes"

    def records(self, tenant: str) -> list[dict[str, Any]]:
        return sorted(super().records(tenant), key=lambda r: (r["model"], r["dataset"], r["layer"]))

    # ---- one build at a time per index ----------------------------------------------------

    def claim_key(self, tenant: str, index: str) -> str:
        """The Redis key of an index's build claim (a fan-out lets it go if its job fails)."""
        return self._lock(tenant, index)

    def _lock(self, tenant: str, index: str) -> str:
        return f"{self.keys.ns}:index-build:{tenant}:{index}"

    def claim_build(self, tenant: str, index: str, job_id: str, seconds: int) -> str:
        """Claim the build of `index` for `job_id`; returns the job that holds the claim (this
        one, or the one already building it)."""
        key = self._lock(tenant, index)
        if self.redis.set(key, job_id, nx=True, ex=max(1, seconds)):
            return job_id
        holder = self.redis.get(key)
        return holder.decode() if holder else self.claim_build(tenant, index, job_id, seconds)

    def release_build(self, tenant: str, index: str, job_id: str) -> None:
        key = self._lock(tenant, index)
        if (self.redis.get(key) or b"").decode() == job_id:
            self.redis.delete(key)


def index_record(
    *, index: str, tenant: str, model: str, dataset: str, layer: str, shape: list[int], k: int, images: int,
    prefix: str, size: int, sha256: str, job: str, seconds: float,
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": index, "model": model, "dataset": dataset, "layer": layer, "layer_shape": shape, "k": k,
        "images": images, "bytes": size, "sha256": sha256, "prefix": prefix, "file": f"{prefix}/{INDEX_FILE}",
        "built_by": job, "built_at": time.time(), "build_seconds": round(seconds, 3), "tenant": tenant,
    }  # fmt: skip
