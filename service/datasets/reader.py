"""Reading images of an indexed dataset by their numbers: ranged reads, never a scan.

The images asked for are read member by member in offset order, neighbours in one read when
the gap between them is small (a batch of consecutive images of a tar shard is one request to
S3, not one per image), each read at most `MAX_SPAN` bytes. A member in a `file` store or under
a dataset root is read from its file with pread; elsewhere with a ranged GET. Files under a
dataset root are resolved again at every read: a link swapped since indexing cannot lead out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from service.datasets.archives import unpack_member
from service.datasets.index import DatasetIndex
from service.datasets.sources import containing_root
from service.storage import BlobNotFound, BlobStore, RangeNotSatisfiable

MAX_GAP = 256 * 1024
MAX_SPAN = 32 * 1024 * 1024


class DataGone(LookupError):
    """A member of the dataset is no longer where its index says (deleted, moved, truncated)."""


class IndexedReader:
    def __init__(self, index: DatasetIndex, store: BlobStore, roots: list[str]):
        self.index = index
        self.store = store
        self.roots = roots

    def read(self, numbers: Sequence[int]) -> list[bytes]:
        """The content of each image asked for, in the order asked."""
        index = self.index
        for number in numbers:
            if not 0 <= number < len(index):
                raise IndexError(f"image {number} of a dataset of {len(index)}")
        order = sorted(range(len(numbers)), key=lambda i: (index.member_path(numbers[i]), index.offset[numbers[i]]))
        found: list[bytes] = [b""] * len(numbers)
        run: list[int] = []
        for position in order:
            if run and not self._joins(numbers[run[0]], numbers[run[-1]], numbers[position]):
                self._read_run(numbers, run, found)
                run = []
            run.append(position)
        if run:
            self._read_run(numbers, run, found)
        return found

    def _joins(self, first: int, last: int, number: int) -> bool:
        index = self.index
        if index.member_path(number) != index.member_path(first):
            return False
        end = index.offset[last] + index.size[last]
        return index.offset[number] - end <= MAX_GAP and index.offset[number] + index.size[number] - index.offset[first] <= MAX_SPAN

    def _read_run(self, numbers: Sequence[int], run: list[int], found: list[bytes]) -> None:
        index = self.index
        first = numbers[run[0]]
        start = index.offset[first]
        end = max(index.offset[numbers[p]] + index.size[numbers[p]] for p in run)
        data = self._read_range(index.member_path(first), start, end)
        for position in run:
            entry = index.entry(numbers[position])
            stored = data[entry.offset - start : entry.offset - start + entry.size]
            found[position] = unpack_member(stored, entry, f"image {numbers[position]} ({entry.name!r})")

    def _read_range(self, member: str, start: int, end: int) -> bytes:
        root = self.index.root
        if "path" in root:
            return self._pread(self._file_path(root["path"], member), start, end)
        key = f"{root['store']}/{member}" if member else root["store"]
        path = self.store.local_path(key)
        if path is not None:
            return self._pread(str(path), start, end)
        if end == start:
            return b""
        try:
            return self.store.open_read(key, start, end).read_all()
        except (BlobNotFound, RangeNotSatisfiable) as exc:
            raise DataGone(f"{key}: {exc}") from exc

    def _file_path(self, top: str, member: str) -> str:
        path = os.path.join(top, member) if member else top
        if containing_root(os.path.realpath(path), self.roots) is None:
            raise DataGone(f"{path} is no longer under an allowed dataset root ({', '.join(self.roots) or 'none'})")
        return path

    @staticmethod
    def _pread(path: str, start: int, end: int) -> bytes:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise DataGone(f"{path}: {exc.strerror}") from exc
        try:
            data = os.pread(descriptor, end - start, start)
        finally:
            os.close(descriptor)
        if len(data) != end - start:
            raise DataGone(f"{path} is shorter than its index says (bytes {start}-{end})")
        return data
