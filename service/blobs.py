"""Uploads made before the blob store (Redis strings: this module used to store them), moved
into the store when a process starts.

Before the blob store, an uploaded model or dataset was a Redis string
`ns:blob:{collection}:{scope}:{id}` beside its catalog record. A deployment upgraded in place
still has those: on start, the API and every worker call `migrate_legacy_uploads`, and the one
that takes `ns:blob-migration-lock` (SET NX, like the reaper's lock, renewed as it goes) moves
each string into the store under the new layout, one at a time and a piece at a time (GETRANGE
into a temporary file: a 512 MiB string never sits in this process's memory): a model's file as
is; a dataset's zip or CSV as an upload of today would be (a zip is indexed). Then one Lua step
rewrites the record (key, size, sha256, index) if it is unchanged, drops the lease and deletes
the string; a record deleted meanwhile has its new files discarded. Workers wait for the move
to end before they take jobs (they read the files); the API does not wait (it never reads
them, and deleting a record deletes a string still there).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from typing import IO, Any

import redis

from service.datasets import uploads
from service.jobstore.lua import LuaScript
from service.keys import Keys
from service.uploaded_files import UploadedFiles
from service.uploads import UploadRejected

log = logging.getLogger("glassbox.migration")

LOCK_MS = 120_000
COPY_CHUNK = 8 * 1024 * 1024
MODEL_FILE_NAMES = {"exported_program": "model.pt2", "safetensors": "weights.safetensors"}

_COMMIT = LuaScript(
    "commit-migrated-upload",
    keys=("catalog", "leases", "legacy_blob"),
    args=("record_id", "old_record", "new_record", "prefix"),
    body="""
if redis.call('HGET', catalog, record_id) ~= old_record then return 0 end
redis.call('HSET', catalog, record_id, new_record)
redis.call('ZREM', leases, prefix)
redis.call('DEL', legacy_blob)
return 1
""",
)

_RELEASE = LuaScript(
    "release-migration-lock",
    keys=("lock",),
    args=("owner",),
    body="if redis.call('GET', lock) == owner then return redis.call('DEL', lock) end return 0",
)

_RENEW = LuaScript(
    "renew-migration-lock",
    keys=("lock",),
    args=("owner", "ms"),
    body="if redis.call('GET', lock) == owner then return redis.call('PEXPIRE', lock, ms) end return 0",
)


class LegacyUploads:
    def __init__(self, connection: redis.Redis, keys: Keys, files: UploadedFiles, owner: str):
        self.redis, self.keys, self.files, self.owner = connection, keys, files, owner
        self._commit = _COMMIT.bind(connection)
        self._release = _RELEASE.bind(connection)
        self._renew = _RENEW.bind(connection)

    def pending(self) -> list[str]:
        return sorted(k.decode() for k in self.redis.scan_iter(match=f"{self.keys.ns}:blob:*", count=1000))

    def migrate(self, *, wait: bool, patience_seconds: float = 3600) -> int:
        """Move every legacy upload, or (without `wait`) leave it to whoever holds the lock.
        Returns how many this process moved."""
        moved = 0
        deadline = time.monotonic() + patience_seconds
        while pending := self.pending():
            if self.redis.set(self.keys.blob_migration_lock, self.owner, nx=True, px=LOCK_MS):
                try:
                    for key in pending:
                        moved += self._migrate_one(key)
                finally:
                    self._release(lock=self.keys.blob_migration_lock, owner=self.owner)
                continue
            if not wait or time.monotonic() > deadline:
                return moved
            time.sleep(0.5)
        return moved

    def _renew_lock(self) -> None:
        self._renew(lock=self.keys.blob_migration_lock, owner=self.owner, ms=LOCK_MS)

    def _migrate_one(self, legacy_key: str) -> int:
        collection, scope, record_id = legacy_key[len(self.keys.ns) + len(":blob:") :].split(":", 2)
        catalog = self.keys.catalog(collection, scope)
        raw = self.redis.hget(catalog, record_id)
        if raw is None:  # its record was deleted: nothing reads the string any more
            self.redis.delete(legacy_key)
            return 0
        with tempfile.TemporaryFile() as spool:
            self._copy(legacy_key, spool)
            prefix = self.files.begin(collection, scope, record_id)
            try:
                fields = self._store(collection, record_id, json.loads(raw), spool, prefix)
            except BaseException:
                self.files.discard(prefix)
                raise
        return self._commit_fields(collection, scope, record_id, legacy_key, raw, fields, prefix)

    def _copy(self, legacy_key: str, spool: IO[bytes]) -> None:
        size = self.redis.strlen(legacy_key)
        for start in range(0, size, COPY_CHUNK):
            spool.write(self.redis.getrange(legacy_key, start, min(start + COPY_CHUNK, size) - 1))
            self._renew_lock()
        spool.seek(0)

    def _store(self, collection: str, record_id: str, record: dict[str, Any], spool: IO[bytes], prefix: str) -> dict:
        if collection == "models":
            name = MODEL_FILE_NAMES.get(record.get("format") or "", "model.bin")
            info = self.files.put_file(f"{prefix}/{name}", spool)
            return {"prefix": prefix, "file": {"name": name, "key": info.key}, "bytes": info.size, "sha256": info.sha256}
        part = uploads.UploadedPart(f"{record_id}.{'csv' if record.get('kind') == 'table' else 'zip'}", spool)
        try:
            prepared = uploads.prepare([part])
        except UploadRejected as exc:
            prepared = None
            failure = f"after the upgrade to the blob store, the upload no longer passes its checks: {exc}"
        stored_name = prepared.stored_names[0] if prepared else "data.bin"
        info = self.files.put_file(f"{prefix}/{stored_name}", spool)
        stored = [{"name": part.filename, "key": info.key, "bytes": info.size, "sha256": info.sha256}]
        if prepared is None:
            return {"prefix": prefix, "files": stored, "bytes": info.size, "status": "failed", "error": failure}
        fields = uploads.dataset_record(record_id, record.get("description", ""), prefix, stored, prepared)
        if prepared.index is not None:
            fields["index"] = uploads.put_index(self.files, prefix, prepared.index)
        return fields

    def _commit_fields(
        self, collection: str, scope: str, record_id: str, legacy_key: str, raw: bytes, fields: dict, prefix: str
    ) -> int:
        catalog = self.keys.catalog(collection, scope)
        for _ in range(10):
            record = json.loads(raw)
            record.pop("names", None)  # a dataset's image names are in its index now
            record.update(fields)
            committed = self._commit(
                catalog=catalog, leases=self.files.leases.key, legacy_blob=legacy_key, record_id=record_id,
                old_record=raw, new_record=json.dumps(record), prefix=prefix,
            )  # fmt: skip
            if committed:
                log.info("moved %s to the blob store under %s", legacy_key, prefix)
                return 1
            raw = self.redis.hget(catalog, record_id)
            if raw is None or "prefix" in json.loads(raw):  # deleted, or moved by another process meanwhile
                self.files.discard(prefix)
                self.redis.delete(legacy_key)
                return 0
        self.files.discard(prefix)
        raise RuntimeError(f"the record of {legacy_key} kept changing while it was being moved; retried at the next start")
