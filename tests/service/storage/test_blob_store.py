"""The blob store's contract, checked on both backends (`backend` is parametrized: file, s3)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.storage import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    RangeNotSatisfiable,
    sweep_orphans,
)
from service.storage.s3_store import PART_SIZE
from tests.service.storage.conftest import Backend

MiB = 1024 * 1024
# 1000 bytes in which every position differs from its neighbours, so a shifted range shows.
DATA = bytes((i * 7 + i // 256) % 256 for i in range(1000))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def expected_info(key: str, data: bytes) -> BlobInfo:
    return BlobInfo(key, len(data), hashlib.sha256(data).hexdigest())


def read(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    with store.open_read(key, start, end) as reader:
        return b"".join(reader)


def assert_absent(backend: Backend, key: str) -> None:
    assert backend.store.head(key) is None
    with pytest.raises(BlobNotFound):
        backend.store.get_bytes(key)
    assert key not in [meta.key for meta in backend.store.list_blobs()]
    # An aborted multipart upload is discarded by the server shortly after (later on a busy machine).
    deadline = time.monotonic() + 15
    while backend.pending_uploads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend.pending_uploads() == []


# ---------------------------------------------------------------------- round trips


def test_round_trip_bytes_and_stream(backend: Backend):
    store = backend.store
    assert store.put_bytes("models/a/model.pt", DATA) == expected_info("models/a/model.pt", DATA)
    assert store.get_bytes("models/a/model.pt") == DATA
    odd_chunks = [DATA[:1], b"", DATA[1:333], bytearray(DATA[333:900]), memoryview(DATA[900:])]
    assert store.put_stream("models/a/copy.pt", iter(odd_chunks)) == expected_info("models/a/copy.pt", DATA)
    assert read(store, "models/a/copy.pt") == DATA
    meta = store.head("models/a/copy.pt")
    assert meta is not None and (meta.key, meta.size) == ("models/a/copy.pt", len(DATA))
    assert store.put_bytes("empty", b"") == expected_info("empty", b"")
    assert store.get_bytes("empty") == b""
    assert store.head("empty").size == 0
    assert store.head("models/a/none") is None
    with pytest.raises(BlobNotFound):
        store.get_bytes("models/a/none")
    with pytest.raises(BlobNotFound):
        store.open_read("models/a/none", 0, 10)


def test_async_round_trip(backend: Backend):
    store = backend.store
    big = os.urandom(PART_SIZE + 3 * MiB + 5)  # past one part: the multipart path on s3

    async def body(data: bytes):
        for chunk in pieces(data, 300_000):
            await asyncio.sleep(0)
            yield chunk

    async def scenario():
        small = await store.put_stream_async("up/small", body(DATA))
        large = await store.put_stream_async("up/large", body(big))
        from_sync_iterable = await store.put_stream_async("up/list", pieces(DATA, 7))
        reader = await store.open_read_async("up/large", chunk_size=256 * 1024)
        chunks = [chunk async for chunk in reader]
        ranged = await (await store.open_read_async("up/small", 10, 20)).read_all()
        return small, large, from_sync_iterable, chunks, ranged, await store.head_async("up/large")

    small, large, listed, chunks, ranged, meta = asyncio.run(scenario())
    assert small == expected_info("up/small", DATA) and listed == expected_info("up/list", DATA)
    assert large == expected_info("up/large", big)
    assert b"".join(chunks) == big and max(map(len, chunks)) <= 256 * 1024
    assert ranged == DATA[10:20]
    assert meta.size == len(big)
    assert asyncio.run(store.get_bytes_async("up/small")) == DATA
    assert asyncio.run(store.head_async("up/none")) is None
    with pytest.raises(BlobNotFound):
        asyncio.run(store.open_read_async("up/none"))


# ---------------------------------------------------------------------- ranges and streaming


@pytest.mark.parametrize(
    ("start", "end", "expected_end"),
    [(0, 1, 1), (0, None, 1000), (400, 600, 600), (999, None, 1000), (999, 1000, 1000), (990, 5000, 1000)],
    ids=["first-byte", "whole", "middle", "last-byte", "last-byte-explicit", "end-past-size"],
)
def test_ranged_reads(backend: Backend, start, end, expected_end):
    store = backend.store
    store.put_bytes("r/blob", DATA)
    with store.open_read("r/blob", start, end) as reader:
        assert (reader.size, reader.start, reader.end, reader.length) == (
            1000,
            start,
            expected_end,
            expected_end - start,
        )
        assert b"".join(reader) == DATA[start:expected_end]
    reader = asyncio.run(store.open_read_async("r/blob", start, end))
    assert (reader.start, reader.end) == (start, expected_end)
    assert asyncio.run(reader.read_all()) == DATA[start:expected_end]
    assert asyncio.run(store.read_range_async("r/blob", start, end)) == (1000, DATA[start:expected_end])


def test_ranges_outside_the_blob_are_refused(backend: Backend):
    store = backend.store
    store.put_bytes("r/blob", DATA)
    store.put_bytes("r/empty", b"")
    for key, start, end in [("r/blob", 1000, None), ("r/blob", 5000, 6000), ("r/empty", 0, 1)]:
        with pytest.raises(RangeNotSatisfiable) as refused:
            store.open_read(key, start, end)
        assert refused.value.size == store.head(key).size
        with pytest.raises(RangeNotSatisfiable):
            asyncio.run(store.open_read_async(key, start, end))
        with pytest.raises(RangeNotSatisfiable):
            asyncio.run(store.read_range_async(key, start, end))
    for start, end in [(-1, None), (5, 5), (7, 3)]:
        with pytest.raises(ValueError, match="invalid"):
            store.open_read("r/blob", start, end)
    with pytest.raises(BlobNotFound):
        store.open_read("r/none", 5000, 6000)
    with pytest.raises(BlobNotFound):
        asyncio.run(store.read_range_async("r/none"))


def test_streaming_a_multi_megabyte_blob_in_bounded_chunks(backend: Backend):
    store = backend.store
    data = os.urandom(5 * MiB + 17)
    store.put_stream("s/big", iter(pieces(data, 100_003)))
    with store.open_read("s/big", chunk_size=64 * 1024) as reader:
        chunks = list(reader)
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= 64 * 1024 and len(chunks) >= len(data) // (64 * 1024)
    with store.open_read("s/big", MiB + 3, 4 * MiB, chunk_size=100_000) as reader:
        middle = list(reader)
    assert b"".join(middle) == data[MiB + 3 : 4 * MiB] and max(map(len, middle)) <= 100_000


# ---------------------------------------------------------------------- nothing half-written


@pytest.mark.parametrize("limit", [1000, PART_SIZE + MiB], ids=["one-request", "multipart"])
def test_byte_limit(backend: Backend, limit: int):
    store = backend.store
    data = os.urandom(limit + 1)
    assert store.put_stream("lim/exact", iter(pieces(data[:limit], 256 * 1024)), max_bytes=limit).size == limit
    assert store.get_bytes("lim/exact") == data[:limit]
    with pytest.raises(BlobTooLarge) as refused:
        store.put_stream("lim/over", iter(pieces(data, 256 * 1024)), max_bytes=limit)
    assert (refused.value.key, refused.value.limit) == ("lim/over", limit)
    assert_absent(backend, "lim/over")
    with pytest.raises(BlobTooLarge):
        store.put_bytes("lim/over", data, max_bytes=limit)
    with pytest.raises(BlobTooLarge):
        asyncio.run(store.put_stream_async("lim/over", pieces(data, 256 * 1024), max_bytes=limit))
    assert_absent(backend, "lim/over")


class SourceBroke(Exception):
    pass


def test_a_source_that_fails_midway_leaves_nothing(backend: Backend):
    """Fails after more than a part (s3: a multipart upload is under way), with an older
    version of the key stored: the old version stays whole, nothing else remains."""
    store = backend.store
    store.put_bytes("fail/kept", b"old version")
    seen_pending: list[list[str]] = []

    def source():
        for _ in range(3):
            yield os.urandom(4 * MiB)
        seen_pending.append(backend.pending_uploads())
        raise SourceBroke("client went away")

    for key in ("fail/new", "fail/kept"):
        with pytest.raises(SourceBroke):
            store.put_stream(key, source())
        assert seen_pending.pop(), "the put should have had an upload under way when the source broke"
    assert_absent(backend, "fail/new")
    assert store.get_bytes("fail/kept") == b"old version"

    async def async_source():
        yield os.urandom(PART_SIZE + MiB)
        raise SourceBroke("client went away")

    with pytest.raises(SourceBroke):
        asyncio.run(store.put_stream_async("fail/new", async_source()))
    assert_absent(backend, "fail/new")


def test_a_cancelled_async_put_leaves_nothing(backend: Backend):
    """Cancelled while waiting on its source after more than a part (e.g. a timeout around a
    request body): the partial upload is discarded, no object appears."""
    store = backend.store

    async def scenario() -> list[str]:
        stalled = asyncio.Event()

        async def source():
            yield os.urandom(PART_SIZE + MiB)
            yield os.urandom(MiB)
            stalled.set()
            await asyncio.Event().wait()  # the client stops sending

        put = asyncio.ensure_future(store.put_stream_async("cancel/key", source()))
        await stalled.wait()
        for _ in range(100):  # until the server holds the upload (s3: parts go up in the background)
            if pending := await asyncio.to_thread(backend.pending_uploads):
                break
            await asyncio.sleep(0.05)
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        return pending

    assert asyncio.run(scenario()), "the put should have had an upload under way when cancelled"
    assert_absent(backend, "cancel/key")


def test_concurrent_puts_of_one_key_publish_one_whole_version(backend: Backend):
    store = backend.store
    versions = [os.urandom(2 * MiB) for _ in range(4)]
    threads = [threading.Thread(target=store.put_stream, args=("c/key", pieces(v, MiB // 3))) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get_bytes("c/key") in versions
    assert [meta.key for meta in store.list_blobs("c")] == ["c/key"]
    assert backend.pending_uploads() == []


# ---------------------------------------------------------------------- delete and list


def test_delete(backend: Backend):
    store = backend.store
    store.put_bytes("d/one/blob", DATA)
    store.put_bytes("d/two", DATA)
    store.delete("d/one/blob")
    assert_absent(backend, "d/one/blob")
    store.delete("d/one/blob")  # a second delete is not an error
    assert store.get_bytes("d/two") == DATA
    assert [meta.key for meta in store.list_blobs("d")] == ["d/two"]


def test_delete_prefix_matches_whole_segments(backend: Backend):
    store = backend.store
    keys = ["jobs/12/result.json", "jobs/12/a.png", "jobs/12/deep/b.npy", "jobs/123/result.json", "jobs/12-x"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert store.delete_prefix("jobs/12") == 3
    assert sorted(meta.key for meta in store.list_blobs("jobs")) == ["jobs/12-x", "jobs/123/result.json"]
    assert store.delete_prefix("jobs/12/") == 0
    assert store.delete_prefix("nothing/here") == 0
    with pytest.raises(ValueError, match="non-empty prefix"):
        store.delete_prefix("")


def test_list_with_sizes_and_times(backend: Backend):
    store = backend.store
    before = datetime.now(UTC)
    store.put_bytes("l/a", b"1")
    store.put_bytes("l/b/c", b"22")
    store.put_bytes("l2/d", b"333")
    after = datetime.now(UTC)
    listed = {meta.key: meta for meta in store.list_blobs("l")}
    assert {key: meta.size for key, meta in listed.items()} == {"l/a": 1, "l/b/c": 2}
    # S3 keeps whole seconds: allow that much rounding, nothing more.
    for meta in listed.values():
        assert before - timedelta(seconds=1) <= meta.last_modified <= after + timedelta(seconds=1)
    assert {meta.key for meta in store.list_blobs()} == {"l/a", "l/b/c", "l2/d"}
    assert list(store.list_blobs("l/a")) == []  # a key is not a folder
    assert store.head("l/b/c").last_modified == listed["l/b/c"].last_modified


def test_sweep_orphans_deletes_only_old_unreferenced_blobs(backend: Backend):
    store = backend.store
    for key in ("art/1/kept", "art/2/orphan", "other/orphan"):
        store.put_bytes(key, b"x")
    referenced = {"art/1/kept"}
    young = sweep_orphans(store, "art", older_than_seconds=3600, is_referenced=referenced.__contains__)
    assert young.deleted == []
    # A negative age reaches a few seconds into the future: S3's clock may run ahead of ours.
    swept = sweep_orphans(store, "art", older_than_seconds=-5, is_referenced=referenced.__contains__)
    assert swept.deleted == ["art/2/orphan"]
    assert {meta.key for meta in store.list_blobs()} == {"art/1/kept", "other/orphan"}


# ---------------------------------------------------------------------- keys


BAD_KEYS = ["", "../x", "a/../b", "/etc/passwd", "a\\b", "a\x00b", "a//b", "a/", ".", "a/./b", ".tmp/x", "a b", "é"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused(backend: Backend, key: str):
    store = backend.store
    calls = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_stream(key, [b"x"]),
        lambda: asyncio.run(store.put_stream_async(key, [b"x"])),
        lambda: store.open_read(key),
        lambda: store.get_bytes(key),
        lambda: store.head(key),
        lambda: store.delete(key),
        lambda: store.presigned_get_url(key, 60),
        lambda: asyncio.run(store.presigned_get_url_async(key, 60)),
        lambda: store.local_path(key),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="key"):
            call()
    if key not in ("", "a/"):  # those two are valid prefixes (everything; folder `a`)
        with pytest.raises(ValueError):
            store.delete_prefix(key)
        with pytest.raises(ValueError):
            list(store.list_blobs(key))


def test_keys_stay_inside_the_store(backend: Backend, tmp_path):
    """Nothing a put accepts lands outside the store's root or prefix."""
    store = backend.store
    store.put_bytes("a-b/c_d/e=f+g@h.i", DATA)
    assert [meta.key for meta in store.list_blobs()] == ["a-b/c_d/e=f+g@h.i"]
    if backend.name == "file":
        assert store.local_path("a-b/c_d/e=f+g@h.i").read_bytes() == DATA
        assert store.local_path("a-b/c_d/e=f+g@h.i").is_relative_to(store.root)
    else:
        assert store.local_path("a-b/c_d/e=f+g@h.i") is None


# ---------------------------------------------------------------------- presigned URLs


def test_presigned_get_url(backend: Backend):
    store = backend.store
    store.put_bytes("p/artifact.png", DATA)
    url = store.presigned_get_url("p/artifact.png", 120)
    async_url = asyncio.run(store.presigned_get_url_async("p/artifact.png", 120))
    if backend.name == "file":
        assert url is None and async_url is None
        return
    for signed in (url, async_url):
        answer = httpx.get(signed)
        assert answer.status_code == 200 and answer.content == DATA
    assert httpx.get(url.split("?")[0]).status_code == 403  # the signature is what lets it in
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == DATA[10:20]
    with pytest.raises(ValueError, match="expires_seconds"):
        store.presigned_get_url("p/artifact.png", 0)
