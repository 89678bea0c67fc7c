"""The `file` backend: blobs are files under one directory, on local disk or a shared volume.

A put writes `<root>/.tmp/<random>.part` (same filesystem as its destination), fsyncs it, and
publishes it with os.replace, which is atomic on POSIX: readers see the old object or the new
one, never a part. A put with `sync=False` (job artifacts) is published before its fsync, which
a background thread does within `flush_interval` seconds (deferred_flush.py). Several
processes, or hosts sharing the volume, may write at once: temporary names are random, and the
last publish of a key wins. A crash leaves only a `.part` file,
which discard_abandoned_uploads removes once it is old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from service.storage.base import BlobStore
from service.storage.deferred_flush import DeferredFlush, fsync_path
from service.storage.errors import BlobNotFound
from service.storage.keys import require_folder_prefix, resolve_range, validate_key, validate_prefix
from service.storage.streams import DEFAULT_CHUNK_SIZE, AsyncBlobReader, BlobInfo, BlobMeta, BlobReader, Meter

TEMP_DIR = ".tmp"
# Writes of an async put are gathered to this size before each trip to a worker thread.
_ASYNC_WRITE_BATCH = 1024 * 1024
_PUBLISH_TRIES = 5


class FileBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str], *, flush_interval: float = 0.0):
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        self._temp_dir = self.root / TEMP_DIR
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        # 0: every put is on disk when it returns, `sync=False` or not.
        self.deferred = DeferredFlush(self.root, flush_interval) if flush_interval > 0 else None

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    # ------------------------------------------------------------------ writing

    def put_stream(
        self, key: str, chunks: Iterable[Any], *, max_bytes: int | None = None, sync: bool = True
    ) -> BlobInfo:
        final = self._path(key)
        meter = Meter(key, max_bytes)
        temp = self._new_temp()
        deferred = None if sync else self.deferred
        try:
            with open(temp, "xb") as file:
                for chunk in meter.wrap(chunks):
                    file.write(chunk)
                if deferred is None:
                    _flush_to_disk(file)
            self._publish(temp, final, sync=deferred is None)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if deferred is not None:
            deferred.add(final)
        return meter.info()

    async def put_stream_async(
        self, key: str, chunks: AsyncIterable[Any] | Iterable[Any], *, max_bytes: int | None = None
    ) -> BlobInfo:
        final = self._path(key)
        meter = Meter(key, max_bytes)
        temp = self._new_temp()
        try:
            file = await asyncio.to_thread(open, temp, "xb")
            try:
                batch: list[Any] = []
                batched = 0
                async for chunk in meter.wrap_async(chunks):
                    batch.append(chunk)
                    batched += len(chunk)
                    if batched >= _ASYNC_WRITE_BATCH:
                        await asyncio.to_thread(file.writelines, batch)
                        batch, batched = [], 0
                await asyncio.to_thread(file.writelines, batch)
                await asyncio.to_thread(_flush_to_disk, file)
            finally:
                file.close()
            await asyncio.to_thread(self._publish, temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return meter.info()

    def _new_temp(self) -> Path:
        return self._temp_dir / f"{uuid.uuid4().hex}.part"

    def _publish(self, temp: Path, final: Path, *, sync: bool = True) -> None:
        # A concurrent delete may prune the (empty) destination folder between mkdir and
        # replace; then the folder is made again.
        for attempt in range(_PUBLISH_TRIES):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temp, final)
                break
            except FileNotFoundError:
                if not temp.exists() or attempt == _PUBLISH_TRIES - 1:
                    raise
        if sync:
            fsync_path(final.parent)  # the rename itself (the bytes were fsynced before it)

    # ------------------------------------------------------------------ reading

    def open_read(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobReader:
        file, size, first, stop = self._open(key, start, end)
        return BlobReader(key, size, first, stop, _read_chunks(file, stop - first, chunk_size), file.close)

    async def open_read_async(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncBlobReader:
        file, size, first, stop = await asyncio.to_thread(self._open, key, start, end)
        chunks = _read_chunks_async(file, stop - first, chunk_size)
        return AsyncBlobReader(key, size, first, stop, chunks, file.close)

    async def read_range_async(self, key: str, start: int = 0, end: int | None = None) -> tuple[int, bytes]:
        # One trip to a worker thread (open, size, read) instead of one per step.
        return await asyncio.to_thread(self._read_range, key, start, end)

    def _read_range(self, key: str, start: int, end: int | None) -> tuple[int, bytes]:
        file, size, first, stop = self._open(key, start, end)
        with file:
            return size, file.read(stop - first)

    def _open(self, key: str, start: int, end: int | None) -> tuple[IO[bytes], int, int, int]:
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - handed to the reader, which closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            size = os.fstat(file.fileno()).st_size
            first, stop = resolve_range(key, size, start, end)
            file.seek(first)
        except BaseException:
            file.close()
            raise
        return file, size, first, stop

    def head(self, key: str) -> BlobMeta | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return BlobMeta(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    async def head_async(self, key: str) -> BlobMeta | None:
        return await asyncio.to_thread(self.head, key)

    def list_blobs(self, prefix: str = "") -> Iterator[BlobMeta]:
        prefix = validate_prefix(prefix)
        top = self.root / prefix if prefix else self.root
        for folder, dirnames, filenames in os.walk(top):
            # Temporary files and anything else hidden are not blobs.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                key = path.relative_to(self.root).as_posix()
                yield BlobMeta(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    # ------------------------------------------------------------------ deleting

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            path.unlink()
        self._prune_empty_folders(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        prefix = require_folder_prefix(prefix)
        top = self.root / prefix
        deleted = 0
        for meta in list(self.list_blobs(prefix)):
            with contextlib.suppress(FileNotFoundError):
                (self.root / meta.key).unlink()
                deleted += 1
        for folder, _, _ in sorted(os.walk(top), key=lambda entry: len(entry[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self._prune_empty_folders(top.parent)
        return deleted

    def _prune_empty_folders(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone, or in use by a publish)
                return
            folder = folder.parent

    def discard_abandoned_uploads(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC).timestamp() - older_than_seconds
        discarded = 0
        for temp in self._temp_dir.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    discarded += 1
        return discarded


def _flush_to_disk(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())




def _read_chunks(file: IO[bytes], length: int, chunk_size: int) -> Iterator[bytes]:
    with file:
        while length > 0:
            chunk = file.read(min(chunk_size, length))
            if not chunk:  # the file cannot shrink (blobs are replaced, never truncated)
                break
            length -= len(chunk)
            yield chunk


async def _read_chunks_async(file: IO[bytes], length: int, chunk_size: int) -> AsyncIterator[bytes]:
    try:
        while length > 0:
            chunk = await asyncio.to_thread(file.read, min(chunk_size, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        file.close()
