"""Files published now and made durable shortly after: the file store's `sync=False` puts.

A put that fsyncs its file and its folder before returning waits for the disk's journal, and
on a small machine those waits serialize the workers: a job that does nothing spent half its
time in them, and two workers finished 0-s jobs only 1.4x as fast as one (bench/scaling.py).
Job artifacts do not need that: a process that crashes loses nothing the kernel already holds,
and only a crash of the machine itself can lose bytes not yet on disk, the same window Redis's
own `appendfsync everysec` accepts for the job records. So the artifacts of a job are written
and published at once, and this thread fsyncs them (and the folders that name them) within
`interval` seconds, many jobs' files in one pass, and whatever is pending when the process
exits. A download whose file came back short from such a crash is refused, not served
truncated (service/api/downloads.py), and every job kind is deterministic: running it again
with the same `seed` gives the same result.

Not a library: fsync batching is a few lines over os.fsync, and none of the storage libraries
in use (obstore, fsspec's local filesystem) defers durability on purpose.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("glassbox.storage")


class DeferredFlush:
    def __init__(self, root: Path, interval: float):
        if interval <= 0:
            raise ValueError("interval must be > 0 (0 means: fsync before the put returns)")
        self.root = root
        self.interval = interval
        self._pending: list[Path] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, path: Path) -> None:
        """`path` was just published without an fsync: make it and its folders durable soon."""
        with self._lock:
            self._pending.append(path)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="glassbox-blob-flush", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def flush(self) -> int:
        """fsync every pending file, then every folder on the way to them; returns how many
        files. On a failing disk the files not yet flushed stay pending, and the error is raised."""
        with self._lock:
            pending, self._pending = self._pending, []
        folders: set[Path] = set()
        for position, path in enumerate(pending):
            try:
                fsync_path(path)
            except FileNotFoundError:  # deleted meanwhile (a discarded try, an expired job)
                continue
            except OSError:
                with self._lock:
                    self._pending[:0] = pending[position:]
                raise
            folder = path.parent
            # The file's own folder, and each folder above it that a put may have made.
            while folder not in folders and (folder == self.root or self.root in folder.parents):
                folders.add(folder)
                folder = folder.parent
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                fsync_path(folder)
        return len(pending)

    def close(self) -> None:
        """Stop the thread and flush what is pending (at exit). A later `add` starts it again."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            atexit.unregister(self.close)
            self._stop.set()
            thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError:  # a full or failing disk: said, and tried again next time
                log.exception("flushing published files to disk failed")


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by its path (a folder: the names in it, such as a rename's)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
