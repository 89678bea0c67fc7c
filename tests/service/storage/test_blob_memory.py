"""Memory stays bounded by the chunk in flight, not by the blob: a ~200 MB stream goes in and
comes back out on both backends while the process's peak RSS barely moves."""

from __future__ import annotations

import asyncio
import hashlib
import mmap
from collections.abc import Callable, Iterator

import pytest

from tests.service.storage.conftest import Backend

MiB = 1024 * 1024
STREAM_CHUNKS = 200  # of 1 MiB each
MAX_GROWTH = 64 * MiB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def peak_rss_growth(work: Callable[[], object]) -> int:
    """Bytes the process's peak RSS rose above its RSS at the start of `work`.

    Writing 5 to /proc/self/clear_refs resets the kernel's high-water mark (VmHWM), so peaks
    inside native code (obstore's Rust buffers) count, not only what a sampler happens to see.
    """
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = _status_kib("VmRSS")
    work()
    return (_status_kib("VmHWM") - baseline) * 1024


def generated_stream(seed: bytes) -> Iterator[bytes]:
    """200 distinct 1 MiB chunks made on the fly (nothing holds the whole stream)."""
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    for index in range(STREAM_CHUNKS):
        yield index.to_bytes(8, "big") + block[8:]


def test_the_meter_sees_a_freed_peak():
    """The measurement itself can fail: a 100 MiB buffer, touched and freed, shows up."""

    def allocate() -> None:
        # Fresh anonymous pages: a bytearray may reuse heap memory that earlier tests of this
        # process freed and the allocator kept resident, which raises no peak at all.
        buffer = mmap.mmap(-1, 100 * MiB)
        for offset in range(0, 100 * MiB, 4096):
            buffer[offset] = 1
        buffer.close()

    assert peak_rss_growth(allocate) >= 90 * MiB


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_200_mb_stream_in_and_out_with_bounded_memory(backend: Backend, mode: str):
    store = backend.store
    expected = hashlib.sha256()
    for chunk in generated_stream(b"expected"):
        expected.update(chunk)
    read_back = hashlib.sha256()
    largest_chunk = 0
    key = f"memory/{mode}.bin"

    def sync_round_trip() -> object:
        nonlocal largest_chunk
        info = store.put_stream(key, generated_stream(b"expected"))
        with store.open_read(key) as reader:
            for chunk in reader:
                read_back.update(chunk)
                largest_chunk = max(largest_chunk, len(chunk))
        return info

    async def async_round_trip() -> object:
        nonlocal largest_chunk

        async def body():
            for chunk in generated_stream(b"expected"):
                yield chunk

        info = await store.put_stream_async(key, body())
        async for chunk in await store.open_read_async(key):
            read_back.update(chunk)
            largest_chunk = max(largest_chunk, len(chunk))
        return info

    infos: list[object] = []
    growth = peak_rss_growth(
        lambda: infos.append(sync_round_trip() if mode == "sync" else asyncio.run(async_round_trip()))
    )
    info = infos[0]
    assert (info.size, info.sha256) == (STREAM_CHUNKS * MiB, expected.hexdigest())
    assert read_back.hexdigest() == expected.hexdigest()
    assert largest_chunk <= MiB
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MiB:.0f} MiB moving a {STREAM_CHUNKS} MiB blob"
    store.delete(key)
    assert backend.pending_uploads() == []
