"""The models a tenant can name in a job, as recorded in Redis.

A record is written by whoever knows the model (a worker after inspecting it); the API reads
records to validate jobs without importing torch. Built-in models live in the `builtin` scope
and are visible to every tenant; uploaded ones in their tenant's scope.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service.settings import Settings

BUILTIN_SCOPE = "builtin"


class ModelCatalog:
    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.namespace = settings.namespace

    def _key(self, scope: str) -> str:
        return f"{self.namespace}:models:{scope}"

    def put(self, scope: str, model_id: str, record: dict[str, Any]) -> None:
        self.redis.hset(self._key(scope), model_id, json.dumps(record))

    def remove(self, scope: str, model_id: str) -> bool:
        return bool(self.redis.hdel(self._key(scope), model_id))

    def get(self, tenant: str, model_id: str) -> dict[str, Any] | None:
        for scope in (tenant, BUILTIN_SCOPE):
            raw = self.redis.hget(self._key(scope), model_id)
            if raw is not None:
                return json.loads(raw)
        return None

    def ids(self, tenant: str) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hkeys(self._key(BUILTIN_SCOPE))
        pipe.hkeys(self._key(tenant))
        builtin, own = pipe.execute()
        return sorted({k.decode() for k in builtin} | {k.decode() for k in own})
