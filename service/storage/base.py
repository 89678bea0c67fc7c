"""The blob store's interface: one ABC, two backends (file_store.py, s3_store.py).

A blob is an immutable file under a key (keys.py). A put publishes the whole object under its
key or nothing; reads stream (streams.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Iterable, Iterator
from pathlib import Path
from typing import Any

from service.storage.keys import validate_key
from service.storage.streams import DEFAULT_CHUNK_SIZE, AsyncBlobReader, BlobInfo, BlobMeta, BlobReader


class BlobStore(ABC):
    """Where uploads, datasets and artifacts live; Redis keeps only their keys, sizes, sha256."""

    url: str  # `file:///abs/path` or `s3://bucket/prefix`, for logs and health output

    @abstractmethod
    def put_stream(
        self, key: str, chunks: Iterable[Any], *, max_bytes: int | None = None, sync: bool = True
    ) -> BlobInfo:
        """Store the concatenated chunks under `key` (replacing any object there) or nothing.

        Raises BlobTooLarge as soon as more than `max_bytes` have arrived; any exception from
        `chunks` propagates unchanged. Either way no object appears under `key` and no partial
        upload is left behind. `sync=False`: the object may reach stable storage a little after
        the put returns (the file backend's flush interval; S3 objects always have when it does).
        """

    @abstractmethod
    async def put_stream_async(
        self, key: str, chunks: AsyncIterable[Any] | Iterable[Any], *, max_bytes: int | None = None
    ) -> BlobInfo:
        """put_stream for an async source (e.g. a request body)."""

    def put_bytes(self, key: str, data: bytes, *, max_bytes: int | None = None, sync: bool = True) -> BlobInfo:
        return self.put_stream(key, [data], max_bytes=max_bytes, sync=sync)

    @abstractmethod
    def open_read(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobReader:
        """Open bytes [start, end) of `key` (end exclusive, clamped to the size) for streaming.

        Raises BlobNotFound, RangeNotSatisfiable (start at or past the end), ValueError.
        """

    @abstractmethod
    async def open_read_async(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncBlobReader:
        """open_read for async callers."""

    def get_bytes(self, key: str) -> bytes:
        """The whole blob in memory: for small blobs only (records, result.json)."""
        return self.open_read(key).read_all()

    async def get_bytes_async(self, key: str) -> bytes:
        return await (await self.open_read_async(key)).read_all()

    async def read_range_async(self, key: str, start: int = 0, end: int | None = None) -> tuple[int, bytes]:
        """(the blob's size, bytes [start, end) of it) in memory, for small ranges; raises as
        open_read does."""
        reader = await self.open_read_async(key, start, end)
        return reader.size, await reader.read_all()

    @abstractmethod
    def head(self, key: str) -> BlobMeta | None:
        """The blob's size and time, or None when there is none."""

    @abstractmethod
    async def head_async(self, key: str) -> BlobMeta | None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under `prefix` (a folder; "" is refused); returns how many."""

    @abstractmethod
    def list_blobs(self, prefix: str = "") -> Iterator[BlobMeta]:
        """Every blob under `prefix`, in no promised order."""

    @abstractmethod
    def discard_abandoned_uploads(self, older_than_seconds: float) -> int:
        """Remove partial uploads left by crashed processes; returns how many."""

    def presigned_get_url(self, key: str, expires_seconds: int) -> str | None:
        """A short-lived URL that GETs the blob without credentials; None where unsupported."""
        validate_key(key)
        return None

    async def presigned_get_url_async(self, key: str, expires_seconds: int) -> str | None:
        """presigned_get_url for async callers (signing may first fetch fresh credentials)."""
        return self.presigned_get_url(key, expires_seconds)

    def local_path(self, key: str) -> Path | None:
        """A path to open/mmap the blob directly (it may not exist); None where blobs are not
        local files."""
        validate_key(key)
        return None
