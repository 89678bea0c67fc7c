"""The `s3` backend: any S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW, R2).

Client: obstore (Python bindings of the Rust `object_store` crate, maintained by Development
Seed). Chosen over boto3 because it is small and imports in tens of milliseconds (the API must
start fast), and it has what the store needs built in: streaming multipart put from a sync or
async iterator (parts uploaded concurrently, the upload aborted when the source raises), ranged
and streamed get, list, bulk delete and presigned URLs. Credentials and region come from the
standard AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION / AWS_DEFAULT_REGION), which obstore reads itself.

Nothing is visible half-written: an object is either one PUT (small blobs) or a multipart
upload, which S3 shows only once completed. A failed put aborts its multipart upload; one left
by a killed process is invisible and is removed by the bucket's lifecycle rule
(AbortIncompleteMultipartUpload), since obstore cannot list multipart uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import timedelta
from typing import Any

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from service.storage.base import BlobStore
from service.storage.errors import BlobNotFound
from service.storage.keys import require_folder_prefix, resolve_range, validate_key, validate_prefix
from service.storage.streams import (
    DEFAULT_CHUNK_SIZE,
    AsyncBlobReader,
    BlobInfo,
    BlobMeta,
    BlobReader,
    Meter,
    split_chunk,
)

# Multipart parts: S3 wants >= 5 MiB (all but the last) and at most 10,000 parts, so 8 MiB
# parts allow objects up to ~78 GiB. Memory held by one upload is about
# (MAX_CONCURRENCY + 1) * PART_SIZE.
PART_SIZE = 8 * 1024 * 1024
MAX_CONCURRENCY = 3
DELETE_BATCH = 1000  # the most keys one S3 DeleteObjects request takes
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
ABORT_WAIT_SECONDS = 30
_NOT_FOUND = (NotFoundError, FileNotFoundError)


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        allow_http: bool = False,
        part_size: int = PART_SIZE,
        max_concurrency: int = MAX_CONCURRENCY,
        **s3_config: Any,
    ):
        """`s3_config`: extra obstore S3Config values (they override the environment)."""
        prefix = validate_prefix(prefix).rstrip("/")
        config: dict[str, Any] = dict(s3_config)
        if endpoint_url:
            config["endpoint"] = endpoint_url
        client_options = {
            "allow_http": allow_http,
            "connect_timeout": timedelta(seconds=10),
            # obstore's default (30 s for a whole request, body included) would cut a large
            # download to a slow client; stalls are left to TCP keepalive and the caller.
            "timeout": timedelta(hours=24),
        }
        self.store = S3Store(bucket, prefix=prefix or None, client_options=client_options, **config)
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.part_size = part_size
        self.max_concurrency = max_concurrency

    # ------------------------------------------------------------------ writing

    def put_stream(
        self, key: str, chunks: Iterable[Any], *, max_bytes: int | None = None, sync: bool = True
    ) -> BlobInfo:
        # `sync` changes nothing: S3 answers a PUT once the object is durable.
        validate_key(key)
        meter = Meter(key, max_bytes)
        source = meter.wrap(chunks)
        try:
            first = _take(source, self.part_size)
            if first.exhausted:
                obstore.put(self.store, key, first.joined(), use_multipart=False)
            else:
                obstore.put(
                    self.store, key, itertools.chain(first.chunks, source), use_multipart=True,
                    chunk_size=self.part_size, max_concurrency=self.max_concurrency,
                )  # fmt: skip
        except Exception:
            _reraise_source_error(meter)
            raise
        return meter.info()

    async def put_stream_async(
        self, key: str, chunks: AsyncIterable[Any] | Iterable[Any], *, max_bytes: int | None = None
    ) -> BlobInfo:
        validate_key(key)
        meter = Meter(key, max_bytes)
        source = meter.wrap_async(chunks)
        try:
            first = await _take_async(source, self.part_size)
            if first.exhausted:
                await obstore.put_async(self.store, key, first.joined(), use_multipart=False)
            else:
                await self._put_multipart_async(key, _chain_async(first.chunks, source))
        except Exception:
            _reraise_source_error(meter)
            raise
        return meter.info()

    async def _put_multipart_async(self, key: str, source: AsyncIterator[Any]) -> None:
        guard = _PullGuard()
        options = {"chunk_size": self.part_size, "max_concurrency": self.max_concurrency}
        upload = asyncio.ensure_future(
            obstore.put_async(self.store, key, guard.pull(source), use_multipart=True, **options)
        )
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            guard.stop()
            # obstore aborts the multipart upload as the pull fails; wait for that, boundedly.
            with contextlib.suppress(BaseException):
                await asyncio.wait({upload}, timeout=ABORT_WAIT_SECONDS)
            raise

    # ------------------------------------------------------------------ reading

    def open_read(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobReader:
        validate_key(key)
        options = _get_options(start, end)
        try:
            result = obstore.get(self.store, key, options=options)
        except _NOT_FOUND:
            raise BlobNotFound(key) from None
        except obstore.exceptions.GenericError:
            self._explain_failed_range(key, start, end, self.head(key))
            raise
        size, first, stop = _resolved(key, result, start, end)
        stream = result.stream(min_chunk_size=chunk_size)
        chunks = (piece for buffer in stream for piece in split_chunk(buffer, chunk_size))
        return BlobReader(key, size, first, stop, chunks, chunks.close)

    async def open_read_async(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncBlobReader:
        validate_key(key)
        options = _get_options(start, end)
        try:
            result = await obstore.get_async(self.store, key, options=options)
        except _NOT_FOUND:
            raise BlobNotFound(key) from None
        except obstore.exceptions.GenericError:
            self._explain_failed_range(key, start, end, await self.head_async(key))
            raise
        size, first, stop = _resolved(key, result, start, end)
        chunks = _split_async(result.stream(min_chunk_size=chunk_size), chunk_size)
        return AsyncBlobReader(key, size, first, stop, chunks, chunks.aclose)

    @staticmethod
    def _explain_failed_range(key: str, start: int, end: int | None, meta: BlobMeta | None) -> None:
        """S3 answers 416 as a generic error: say which of our errors it was, if one."""
        if meta is None:
            raise BlobNotFound(key) from None
        resolve_range(key, meta.size, start, end)

    def head(self, key: str) -> BlobMeta | None:
        validate_key(key)
        try:
            return _meta(obstore.head(self.store, key))
        except _NOT_FOUND:
            return None

    async def head_async(self, key: str) -> BlobMeta | None:
        validate_key(key)
        try:
            return _meta(await obstore.head_async(self.store, key))
        except _NOT_FOUND:
            return None

    def list_blobs(self, prefix: str = "") -> Iterator[BlobMeta]:
        prefix = validate_prefix(prefix)
        for batch in obstore.list(self.store, prefix=prefix or None, chunk_size=1000):
            for entry in batch:
                yield _meta(entry)

    def presigned_get_url(self, key: str, expires_seconds: int) -> str:
        return obstore.sign(self.store, "GET", key, _presign_lifetime(key, expires_seconds))

    async def presigned_get_url_async(self, key: str, expires_seconds: int) -> str:
        return await obstore.sign_async(self.store, "GET", key, _presign_lifetime(key, expires_seconds))

    # ------------------------------------------------------------------ deleting

    def delete(self, key: str) -> None:
        validate_key(key)
        obstore.delete(self.store, key)  # S3 deletes of a missing key succeed

    def delete_prefix(self, prefix: str) -> int:
        prefix = require_folder_prefix(prefix)
        deleted = 0
        keys = (meta.key for meta in self.list_blobs(prefix))
        while batch := list(itertools.islice(keys, DELETE_BATCH)):
            obstore.delete(self.store, batch)
            deleted += len(batch)
        return deleted

    def discard_abandoned_uploads(self, older_than_seconds: float) -> int:
        """Nothing to do here: see the module docstring (bucket lifecycle rule)."""
        return 0


# ---------------------------------------------------------------------- helpers


class _First:
    """The first part's worth of a source: decides between one PUT and a multipart upload."""

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.size = 0
        self.exhausted = True

    def add(self, chunk: Any, limit: int) -> bool:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.exhausted = self.size < limit
        return self.exhausted

    def joined(self) -> bytes:
        return b"".join(self.chunks)


def _take(source: Iterator[Any], limit: int) -> _First:
    first = _First()
    for chunk in source:
        if not first.add(chunk, limit):
            break
    return first


async def _take_async(source: AsyncIterator[Any], limit: int) -> _First:
    first = _First()
    async for chunk in source:
        if not first.add(chunk, limit):
            break
    return first


async def _chain_async(head: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


class _PutCancelled(Exception):
    pass


class _PullGuard:
    """obstore pulls an async source from tasks of its own, which cancelling the put does not
    reach: left alone, the pull would wait on the source forever and the multipart upload
    would never be aborted. `stop` fails the pull (the pending step, or the next one)."""

    def __init__(self) -> None:
        self.stopped = False
        self.step: asyncio.Task[Any] | None = None

    async def pull(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        while True:
            self._check()
            self.step = asyncio.current_task()
            try:
                chunk = await anext(source)
            except StopAsyncIteration:
                return
            finally:
                self.step = None
            yield chunk

    def _check(self) -> None:
        if self.stopped:
            raise _PutCancelled("the put was cancelled")

    def stop(self) -> None:
        self.stopped = True
        if self.step is not None:
            self.step.cancel()


async def _split_async(stream: Any, chunk_size: int) -> AsyncIterator[bytes]:
    async for buffer in stream:
        for piece in split_chunk(buffer, chunk_size):
            yield piece


def _reraise_source_error(meter: Meter) -> None:
    """The chunk source's own exception (BlobTooLarge, the caller's error), not obstore's wrap."""
    if meter.error is not None and isinstance(meter.error, Exception):
        raise meter.error


def _presign_lifetime(key: str, expires_seconds: int) -> timedelta:
    validate_key(key)
    if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
    return timedelta(seconds=expires_seconds)


def _get_options(start: int, end: int | None) -> dict[str, Any] | None:
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"byte range ({start}, {end}) is invalid: need 0 <= start < end")
    if start == 0 and end is None:
        return None
    return {"range": (start, end) if end is not None else {"offset": start}}


def _resolved(key: str, result: Any, start: int, end: int | None) -> tuple[int, int, int]:
    size = result.meta["size"]
    first, stop = resolve_range(key, size, start, end)
    return size, first, stop


def _meta(entry: Any) -> BlobMeta:
    return BlobMeta(entry["path"], entry["size"], entry["last_modified"])
