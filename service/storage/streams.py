"""Bytes in and out of a blob store: the records a put returns, the meter that enforces the byte
limit and computes the sha256 as chunks arrive, and the readers a get returns."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.storage.errors import BlobTooLarge

# Chunks handed to readers are at most this big: a download holds one chunk per client.
DEFAULT_CHUNK_SIZE = 1024 * 1024


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
