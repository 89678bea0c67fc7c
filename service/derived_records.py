"""Records of files derived from a model or a dataset: activation indexes (indexes.py), atlas
chunk folders (atlases.py) and MACO's dataset spectra (spectra.py).

Each kind keeps one Redis hash per tenant, `ns:{collection}:{tenant}`, record id -> JSON. A
record names the blob prefix its files live under and keeps that prefix leased
(blob_leases.py) until the record is replaced or deleted; the files then go at the blob
sweeper's next pass. Deleting a model or a dataset deletes the records derived from it
(`delete_for`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import redis

from service.blob_leases import BlobLeases
from service.keys import Keys


class DerivedRecords:
    collection: ClassVar[str]  # the hash's name: `ns:{collection}:{tenant}`
    id_field: ClassVar[str] = "id"  # the record's own id, its field in the hash

    def __init__(self, connection: redis.Redis, keys: Keys):
        self.redis = connection
        self.keys = keys
        self.leases = BlobLeases(connection, keys)

    def _key(self, tenant: str) -> str:
        return f"{self.keys.ns}:{self.collection}:{tenant}"

    def get(self, tenant: str, record_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self._key(tenant), record_id)
        return json.loads(raw) if raw else None

    def records(self, tenant: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.redis.hvals(self._key(tenant))]

    def publish(self, tenant: str, record: dict[str, Any]) -> None:
        """The record of finished files; they now live until the record goes (a previous
        record's files, if any, go at the next sweep)."""
        previous = self.get(tenant, record[self.id_field])
        self.redis.hset(self._key(tenant), record[self.id_field], json.dumps(record))
        self.leases.keep(record["prefix"])
        if previous and previous.get("prefix") != record["prefix"]:
            self.leases.release(previous["prefix"])

    def delete(self, tenant: str, record_id: str) -> bool:
        record = self.get(tenant, record_id)
        if record is None or not self.redis.hdel(self._key(tenant), record_id):
            return False
        self.leases.release(record["prefix"])
        return True

    def delete_for(self, tenant: str, *, model: str | None = None, dataset: str | None = None) -> int:
        """Delete the tenant's records derived from a model or a dataset being deleted."""
        gone = [
            r[self.id_field]
            for r in self.records(tenant)
            if (model and r.get("model") == model) or (dataset and r.get("dataset") == dataset)
        ]
        return sum(self.delete(tenant, record_id) for record_id in gone)
