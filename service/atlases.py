"""The stored chunks of atlases: what makes an atlas resumable and a repeated one instant.

An atlas job renders its units in chunks (worker/kinds/atlas/chunk.py), each kept in the blob
store under its atlas's folder `atlases/{tenant}/{key}/` (the key: model and dataset content,
layer and params; service/kinds/atlas.py). A record per folder (`ns:atlases:{tenant}`, a hash
key -> JSON) owns it: it is written before the first chunk, so no chunk is ever an orphan, and
it is deleted with its model or dataset (derived_records.py; the folder then goes at the blob
sweeper's next pass).
"""

from __future__ import annotations

import json
import time

from service.derived_records import DerivedRecords


class AtlasCache(DerivedRecords):
    collection = "atlases"
    id_field = "key"

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
