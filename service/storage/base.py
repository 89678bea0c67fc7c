"""The blob store's interface, its records and errors, and the checks every backend shares.

A blob is an immutable file under a key. Keys are relative POSIX paths chosen by the service
(never by a client verbatim), checked here so that neither backend can be walked out of its
root or prefix. A put publishes the whole object under its key or nothing.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# Chunks handed to readers are at most this big: a download holds one chunk per client.
DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_KEY_LENGTH = 512
# Segments may not start with "." (no `.`/`..`, no hidden files), which also keeps the file
# backend's temporary names (under `.tmp/`) out of reach of any key.
_SEGMENT = re.compile(r"[A-Za-z0-9_@=+-][A-Za-z0-9._@=+-]*")


class BlobTooLarge(Exception):
    """A put delivered more bytes than its `max_bytes`; nothing was stored."""

    def __init__(self, key: str, limit: int):
        super().__init__(f"blob {key!r} is larger than the limit of {limit} bytes")
        self.key = key
        self.limit = limit


class BlobNotFound(LookupError):
    def __init__(self, key: str):
        super().__init__(f"no blob under key {key!r}")
        self.key = key


class RangeNotSatisfiable(ValueError):
    """The requested range starts at or after the end of the blob (HTTP 416)."""

    def __init__(self, key: str, start: int, size: int):
        super().__init__(f"range starting at byte {start} is outside blob {key!r} of {size} bytes")
        self.key = key
        self.start = start
        self.size = size


@dataclass(frozen=True)
class BlobInfo:
    """What a put stored: the record the catalog keeps next to the key."""

    key: str
    size: int
    sha256: str  # hex digest of the whole object


@dataclass(frozen=True)
class BlobMeta:
    """What head and list see of a stored object."""

    key: str
    size: int
    last_modified: datetime  # timezone-aware (UTC)


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative POSIX path, else raise ValueError saying why."""
    if not isinstance(key, str) or not key:
        raise ValueError("a blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key is longer than {MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        raise ValueError(f"blob key {key!r} contains a NUL character")
    if "\\" in key:
        raise ValueError(f"blob key {key!r} contains a backslash; keys are POSIX paths")
    if key.startswith("/"):
        raise ValueError(f"blob key {key!r} is absolute; keys are relative paths")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"blob key {key!r} has an empty, `.` or `..` segment")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"blob key {key!r}: segment {segment!r} may use letters, digits and `._@=+-`, "
                "and may not start with `.`"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix is "" (everything) or a key naming a folder; one trailing "/" is allowed.

    Prefixes match whole path segments: `jobs/12` covers `jobs/12/a`, never `jobs/123/a`.
    """
    if prefix == "":
        return ""
    return validate_key(prefix[:-1] if prefix.endswith("/") else prefix)


def resolve_range(key: str, size: int, start: int, end: int | None) -> tuple[int, int]:
    """(start, end) with `end` exclusive and clamped to `size`, as HTTP Range wants it.

    A whole read (start 0, no end) of an empty blob is fine; any other range must start inside it.
    """
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"byte range ({start}, {end}) is invalid: need 0 <= start < end")
    if end is None and start == 0:
        return 0, size
    if start >= size:
        raise RangeNotSatisfiable(key, start, size)
    return start, size if end is None else min(end, size)


def split_chunk(chunk: Any, chunk_size: int) -> Iterator[bytes]:
    """Cut one buffer into `bytes` pieces of at most `chunk_size`."""
    view = memoryview(chunk)
    for offset in range(0, len(view), chunk_size):
        yield bytes(view[offset : offset + chunk_size])


class Meter:
    """Counts, hashes and limits the bytes of one put as they arrive, before they are stored."""

    def __init__(self, key: str, max_bytes: int | None):
        self.key = key
        self.max_bytes = max_bytes
        self.size = 0
        self.hash = hashlib.sha256()
        # The exception a wrapped source raised: some backends hand chunk sources to native
        # code, and this is what the put re-raises whatever that code turned it into.
        self.error: BaseException | None = None

    def feed(self, chunk: Any) -> Any:
        size = memoryview(chunk).nbytes
        if self.max_bytes is not None and self.size + size > self.max_bytes:
            raise BlobTooLarge(self.key, self.max_bytes)
        self.size += size
        self.hash.update(chunk)
        return chunk

    def wrap(self, chunks: Iterable[Any]) -> Iterator[Any]:
        try:
            for chunk in chunks:
                if len(chunk):
                    yield self.feed(chunk)
        except BaseException as error:
            self.error = error
            raise

    async def wrap_async(self, chunks: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
        try:
            async for chunk in as_async_iterable(chunks):
                if len(chunk):
                    yield self.feed(chunk)
        except BaseException as error:
            self.error = error
            raise

    def info(self) -> BlobInfo:
        return BlobInfo(self.key, self.size, self.hash.hexdigest())


async def as_async_iterable(chunks: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if hasattr(chunks, "__aiter__"):
        async for chunk in chunks:  # type: ignore[union-attr]
            yield chunk
    else:
        for chunk in chunks:  # type: ignore[union-attr]
            yield chunk


class _OpenRead:
    """What both readers know before the first chunk is read: the blob and the resolved range,
    so a caller can answer 404/416 and set Content-Length/Content-Range first."""

    def __init__(self, key: str, size: int, start: int, end: int, chunks: Any, close: Callable[[], Any]):
        self.key, self.size, self.start, self.end = key, size, start, end
        self._chunks = chunks
        self._close = close

    @property
    def length(self) -> int:
        return self.end - self.start


class BlobReader(_OpenRead):
    """An open read of one blob, iterated in chunks."""

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def read_all(self) -> bytes:
        with self:
            return b"".join(self._chunks)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncBlobReader(_OpenRead):
    """The async twin of BlobReader, for StreamingResponse."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def read_all(self) -> bytes:
        async with self:
            return b"".join([chunk async for chunk in self._chunks])

    async def aclose(self) -> None:
        result = self._close()
        if hasattr(result, "__await__"):
            await result

    async def __aenter__(self) -> AsyncBlobReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class BlobStore(ABC):
    """Where uploads, datasets and artifacts live; Redis keeps only their keys, sizes, sha256."""

    url: str  # `file:///abs/path` or `s3://bucket/prefix`, for logs and health output

    @abstractmethod
    def put_stream(self, key: str, chunks: Iterable[Any], *, max_bytes: int | None = None) -> BlobInfo:
        """Store the concatenated chunks under `key` (replacing any object there) or nothing.

        Raises BlobTooLarge as soon as more than `max_bytes` have arrived; any exception from
        `chunks` propagates unchanged. Either way no object appears under `key` and no partial
        upload is left behind.
        """

    @abstractmethod
    async def put_stream_async(
        self, key: str, chunks: AsyncIterable[Any] | Iterable[Any], *, max_bytes: int | None = None
    ) -> BlobInfo:
        """put_stream for an async source (e.g. a request body)."""

    def put_bytes(self, key: str, data: bytes, *, max_bytes: int | None = None) -> BlobInfo:
        return self.put_stream(key, [data], max_bytes=max_bytes)

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


def require_folder_prefix(prefix: str) -> str:
    prefix = validate_prefix(prefix)
    if not prefix:
        raise ValueError("delete_prefix needs a non-empty prefix; it never deletes the whole store")
    return prefix
