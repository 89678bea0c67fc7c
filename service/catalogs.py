"""The models and datasets a tenant can name in a job, as recorded in Redis.

A record is written by whoever knows the thing (a worker after inspecting a model, the API after
checking an upload); the API reads records to validate jobs without importing torch. Built-in
records live in the `builtin` scope and are visible to every tenant; uploaded ones in their
tenant's scope.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service.keys import Keys
from service.settings import BUILTIN_SCOPE, Settings

__all__ = ["BUILTIN_SCOPE", "Catalog", "DatasetCatalog", "ModelCatalog"]


class Catalog:
    """Records of one collection, by scope (a tenant, or `builtin`)."""

    collection = ""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.keys = Keys(settings.namespace)

    def _key(self, scope: str) -> str:
        return self.keys.catalog(self.collection, scope)

    def put(self, scope: str, record_id: str, record: dict[str, Any]) -> None:
        self.redis.hset(self._key(scope), record_id, json.dumps(record))

    def put_if_absent(self, scope: str, record_id: str, record: dict[str, Any]) -> bool:
        return bool(self.redis.hsetnx(self._key(scope), record_id, json.dumps(record)))

    def remove(self, scope: str, record_id: str) -> bool:
        return bool(self.redis.hdel(self._key(scope), record_id))

    def find(self, tenant: str, record_id: str) -> tuple[str, dict[str, Any]] | None:
        """(scope, record) of the tenant's own record, else the built-in one."""
        for scope in (tenant, BUILTIN_SCOPE):
            raw = self.redis.hget(self._key(scope), record_id)
            if raw is not None:
                return scope, json.loads(raw)
        return None

    def get(self, tenant: str, record_id: str) -> dict[str, Any] | None:
        found = self.find(tenant, record_id)
        return found[1] if found else None

    def records(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's own records and the built-in ones, by id (own first on a clash)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self._key(BUILTIN_SCOPE))
        pipe.hgetall(self._key(tenant))
        builtin, own = pipe.execute()
        merged = {k.decode(): json.loads(v) for k, v in builtin.items()}
        merged.update({k.decode(): json.loads(v) for k, v in own.items()})
        return [merged[k] for k in sorted(merged)]

    def ids(self, tenant: str) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hkeys(self._key(BUILTIN_SCOPE))
        pipe.hkeys(self._key(tenant))
        builtin, own = pipe.execute()
        return sorted({k.decode() for k in builtin} | {k.decode() for k in own})


class ModelCatalog(Catalog):
    collection = "models"


class DatasetCatalog(Catalog):
    collection = "datasets"
