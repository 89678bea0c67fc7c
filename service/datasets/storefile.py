"""A blob opened as a seekable, read-only file, for zipfile and tarfile to index it in place.

For a `file` store the blob's own file is opened. Elsewhere (S3) reads are ranged GETs of at
least `BLOCK` bytes, kept as one block: tarfile reads 512-byte headers and zipfile a central
directory then local headers, and one request per such read would be far too many.
"""

from __future__ import annotations

import io
import os
from typing import IO

from service.storage import BlobNotFound, BlobStore

BLOCK = 8 * 1024 * 1024


def open_blob(store: BlobStore, key: str, size: int | None = None) -> tuple[IO[bytes], int]:
    """(a seekable binary file of the blob, its size); BlobNotFound when there is none."""
    path = store.local_path(key)
    if path is not None:
        try:
            file = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        return file, os.fstat(file.fileno()).st_size
    if size is None:
        meta = store.head(key)
        if meta is None:
            raise BlobNotFound(key)
        size = meta.size
    return io.BufferedReader(StoreFile(store, key, size), buffer_size=64 * 1024), size


class StoreFile(io.RawIOBase):
    def __init__(self, store: BlobStore, key: str, size: int, block: int = BLOCK):
        self.store, self.key, self.size, self.block = store, key, size, block
        self.position = 0
        self._start = 0
        self._data = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self.position < self.size:
            if not self._start <= self.position < self._start + len(self._data):
                self._fetch(len(view) - filled)
            start = self.position - self._start
            piece = self._data[start : start + len(view) - filled]
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
            self.position += len(piece)
        return filled

    def _fetch(self, wanted: int) -> None:
        end = min(self.size, self.position + max(self.block, wanted))
        self._data = self.store.open_read(self.key, self.position, end).read_all()
        self._start = self.position
        if not self._data:
            raise OSError(f"blob {self.key!r} ended at byte {self.position} of {self.size}")
