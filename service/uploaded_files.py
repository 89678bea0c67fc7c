"""Uploaded models and datasets as files in the blob store, and their catalog records published
and removed in step with the files' leases (service/blob_leases.py).

Layout: `models/{scope}/{id}/{token}/{file}` and `datasets/{scope}/{id}/{token}/...` (the data,
and `index.json.gz` for images). The token is new for every upload, so an upload never writes
over another's files (a re-upload under a deleted name, two uploads racing for one name, or
test stacks sharing one store), and a record's `prefix` says which files are its own.

The order that keeps files and records in step: hold a lease on the prefix, write the files,
then publish the record and drop the lease in one Lua script (HSETNX: a name taken meanwhile
leaves the record unwritten, and the files to be discarded). A crash before the publish leaves
files that the elected reaper deletes once the lease ends; never a record without its files.
Removing a record and releasing its prefix are also one script.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import IO, Any

import redis

from service.blob_leases import BlobLeases
from service.jobstore.lua import LuaScript
from service.keys import Keys
from service.storage import DEFAULT_CHUNK_SIZE, BlobInfo, BlobStore

# How long the files of an upload (or of an index being built) stay if their writer dies.
WRITE_GRACE_SECONDS = 6 * 3600

_PUBLISH = LuaScript(
    "publish-upload",
    keys=("catalog", "leases"),
    args=("record_id", "record", "prefix"),
    body="""
if redis.call('HSETNX', catalog, record_id, record) == 0 then return 0 end
redis.call('ZREM', leases, prefix)
return 1
""",
)

# Rewrites a record only while it still owns `prefix` (not deleted, nor uploaded again since)
# and, given `status`, while it still has that status (a worker's verdict is never overwritten).
_UPDATE = LuaScript(
    "update-upload",
    keys=("catalog", "leases"),
    args=("record_id", "record", "prefix", "keep", "status"),
    body="""
local current = redis.call('HGET', catalog, record_id)
if not current then return 0 end
local ok, decoded = pcall(cjson.decode, current)
if not ok or decoded['prefix'] ~= prefix then return 0 end
if status ~= '' and decoded['status'] ~= status then return 0 end
redis.call('HSET', catalog, record_id, record)
if keep == '1' then redis.call('ZREM', leases, prefix) end
return 1
""",
)

_REMOVE = LuaScript(
    "remove-upload",
    keys=("catalog", "leases", "legacy_blob"),
    args=("record_id",),
    body="""
local current = redis.call('HGET', catalog, record_id)
if not current then return false end
redis.call('HDEL', catalog, record_id)
redis.call('DEL', legacy_blob)
local ok, decoded = pcall(cjson.decode, current)
if ok and type(decoded['prefix']) == 'string' then redis.call('ZADD', leases, 0, decoded['prefix']) end
return current
""",
)


def file_chunks(file: IO[bytes], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    file.seek(0)
    while chunk := file.read(chunk_size):
        yield chunk


class UploadedFiles:
    def __init__(self, connection: redis.Redis, keys: Keys, store: BlobStore):
        self.redis = connection
        self.keys = keys
        self.store = store
        self.leases = BlobLeases(connection, keys)
        self._publish = _PUBLISH.bind(connection)
        self._update = _UPDATE.bind(connection)
        self._remove = _REMOVE.bind(connection)

    def begin(self, collection: str, scope: str, record_id: str, seconds: float = WRITE_GRACE_SECONDS) -> str:
        """A new prefix for an upload's files, held by a lease from before its first byte."""
        prefix = f"{collection}/{scope}/{record_id}/{secrets.token_hex(8)}"
        self.leases.hold(prefix, seconds)
        return prefix

    def put_file(self, key: str, file: IO[bytes], max_bytes: int | None = None) -> BlobInfo:
        """Stream a seekable file into the store (size limit and sha256 as it goes)."""
        return self.store.put_stream(key, file_chunks(file), max_bytes=max_bytes)

    def publish(self, collection: str, scope: str, record_id: str, record: dict[str, Any]) -> bool:
        """Write the record (unless the name is taken) and hand its prefix to it: no lease."""
        return bool(
            self._publish(
                catalog=self.keys.catalog(collection, scope), leases=self.leases.key, record_id=record_id,
                record=json.dumps(record), prefix=record["prefix"],
            )  # fmt: skip
        )

    def update(
        self,
        collection: str,
        scope: str,
        record_id: str,
        record: dict[str, Any],
        *,
        keep: bool = False,
        only_if_status: str | None = None,
    ) -> bool:
        """Rewrite the record if it still owns its prefix (and has status `only_if_status`, when
        given); with `keep`, drop the prefix's lease in the same step."""
        return bool(
            self._update(
                catalog=self.keys.catalog(collection, scope), leases=self.leases.key, record_id=record_id,
                record=json.dumps(record), prefix=record["prefix"], keep=keep, status=only_if_status,
            )  # fmt: skip
        )

    def remove(self, collection: str, scope: str, record_id: str) -> dict[str, Any] | None:
        """Delete the record; its files go at the next sweep. None when there was none."""
        removed = self._remove(
            catalog=self.keys.catalog(collection, scope), leases=self.leases.key,
            legacy_blob=self.keys.blob(collection, scope, record_id), record_id=record_id,
        )  # fmt: skip
        return json.loads(removed) if removed else None

    def discard(self, prefix: str) -> None:
        """Files that no record will own: deleted now (at the next sweep if that fails)."""
        try:
            self.store.delete_prefix(prefix)
        except Exception:
            self.leases.release(prefix)
            raise
        self.redis.zrem(self.leases.key, prefix)
