"""Uploaded files (models, datasets), stored in Redis next to their catalog records."""

from __future__ import annotations

import redis

from service.settings import Settings


class RedisUploads:
    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.namespace = settings.namespace

    def key(self, collection: str, scope: str, blob_id: str) -> str:
        return f"{self.namespace}:blob:{collection}:{scope}:{blob_id}"

    def put(self, collection: str, scope: str, blob_id: str, data: bytes) -> None:
        self.redis.set(self.key(collection, scope, blob_id), data)

    def get(self, collection: str, scope: str, blob_id: str) -> bytes | None:
        return self.redis.get(self.key(collection, scope, blob_id))

    def delete(self, collection: str, scope: str, blob_id: str) -> None:
        self.redis.delete(self.key(collection, scope, blob_id))
