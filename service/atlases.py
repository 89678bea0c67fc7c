"""The stored chunks of atlases: what makes an atlas resumable and a repeated one instant.

An atlas job renders its units in chunks (worker/kinds/atlas/chunk.py), each kept in the blob
store under its atlas's folder `atlases/{tenant}/{key}/` (the key: model and dataset content,
layer and params; service/kinds/atlas.py). A record per folder (`ns:atlases:{tenant}`, a hash
key -> JSON) owns it: it is written before the first chunk, so no chunk is ever an orphan, and
it is deleted with its model or dataset (the folder then goes at the blob sweeper's next pass).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from service.blob_leases import BlobLeases
from service.keys import Keys


class AtlasCache:
    def __init__(self, connection: redis.Redis, keys: Keys):
        self.redis = connection
        self.keys = keys
        self.leases = BlobLeases(connection, keys)

    def _key(self, tenant: str) -> str:
        return f"{self.keys.ns}:atlases:{tenant}"

    def folder(self, tenant: str, key: str, *, model: str, dataset: str, layer: str) -> str:
        """The atlas's chunk folder, its record written first if this is its first job."""
        prefix = f"atlases/{tenant}/{key}"
        record = {
            "key": key,
            "model": model,
            "dataset": dataset,
            "layer": layer,
            "prefix": prefix,
            "created_at": time.time(),
        }
        self.redis.hsetnx(self._key(tenant), key, json.dumps(record))
        return prefix

    def records(self, tenant: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.redis.hvals(self._key(tenant))]

    def delete_for(self, tenant: str, *, model: str | None = None, dataset: str | None = None) -> int:
        """Forget the chunks of a model's or a dataset's atlases (being deleted)."""
        gone = [
            r for r in self.records(tenant) if (model and r["model"] == model) or (dataset and r["dataset"] == dataset)
        ]
        for record in gone:
            if self.redis.hdel(self._key(tenant), record["key"]):
                self.leases.release(record["prefix"])
        return len(gone)
