"""The file store's `sync=False` puts (job artifacts): published at once, fsynced in the
background within the flush interval, with the folders that name them, and whatever is pending
at close; a file deleted meanwhile is skipped; a failing fsync keeps the rest pending.

fsync itself is observed by wrapping os.fsync (the real call still runs) and naming each
descriptor from /proc/self/fd: whether bytes reached the platter cannot be seen from here."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from service.storage.deferred_flush import DeferredFlush
from service.storage.file_store import FileBlobStore


@pytest.fixture
def fsynced(monkeypatch) -> list[Path]:
    seen: list[Path] = []
    lock = threading.Lock()
    real = os.fsync

    def recording(descriptor: int) -> None:
        with lock:
            seen.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def test_a_deferred_put_is_readable_at_once_and_fsynced_with_its_folders_within_the_interval(tmp_path, fsynced):
    store = FileBlobStore(tmp_path, flush_interval=0.2)
    store.put_bytes("artifacts/job1/try/result.json", b"{}", sync=False)
    store.put_bytes("artifacts/job1/try/a.npy", b"123", sync=False)
    assert store.get_bytes("artifacts/job1/try/a.npy") == b"123"
    assert fsynced == []  # nothing waited for the disk
    deadline = time.monotonic() + 5
    while len(fsynced) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    root = tmp_path.resolve()
    folder = root / "artifacts/job1/try"
    assert sorted(fsynced[:2]) == sorted([folder / "result.json", folder / "a.npy"])
    # each folder once, deepest first: the rename into `try`, and the mkdirs above it
    assert fsynced[2:] == [folder, folder.parent, folder.parent.parent, root]
    store.deferred.close()


def test_a_synced_put_waits_for_the_disk_and_leaves_nothing_pending(tmp_path, fsynced):
    store = FileBlobStore(tmp_path, flush_interval=60)
    store.put_bytes("uploads/u1/model.pt2", b"weights")
    root = tmp_path.resolve()
    assert fsynced[-1] == root / "uploads/u1"  # the rename made durable before the put returned
    assert fsynced[0].parent == root / ".tmp"  # the bytes, fsynced under their temporary name
    assert store.deferred.flush() == 0


def test_with_no_interval_every_put_is_synced(tmp_path, fsynced):
    store = FileBlobStore(tmp_path, flush_interval=0)
    store.put_bytes("artifacts/j/t/x.bin", b"x", sync=False)
    assert store.deferred is None
    assert fsynced[-1] == tmp_path.resolve() / "artifacts/j/t"


def test_close_flushes_what_is_pending_and_a_deleted_file_is_skipped(tmp_path, fsynced):
    store = FileBlobStore(tmp_path, flush_interval=60)
    store.put_bytes("artifacts/j/t/kept.bin", b"1", sync=False)
    store.put_bytes("artifacts/j/t/gone.bin", b"2", sync=False)
    store.delete("artifacts/j/t/gone.bin")
    store.deferred.close()
    root = tmp_path.resolve()
    assert fsynced[0] == root / "artifacts/j/t/kept.bin"
    assert root / "artifacts/j/t/gone.bin" not in fsynced
    assert store.deferred.flush() == 0
    # a put after close starts the thread again
    store.put_bytes("artifacts/j/t/later.bin", b"3", sync=False)
    assert store.deferred.flush() == 1
    store.deferred.close()


def test_a_failing_fsync_keeps_the_files_not_yet_flushed(tmp_path, monkeypatch):
    flush = DeferredFlush(tmp_path, interval=60)
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for path in paths:
        path.write_bytes(b"x")
    calls = []

    def failing_on_b(descriptor: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{descriptor}")).name
        calls.append(name)
        if name == "b":
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_on_b)
    flush._pending = list(paths)  # as three adds would leave it, without starting the thread
    with pytest.raises(OSError):
        flush.flush()
    assert flush._pending == paths[1:]
    monkeypatch.undo()
    assert flush.flush() == 2
