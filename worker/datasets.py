"""Datasets as job functions read them: images through the dataset's index, decoded when asked
for (a batch at a time, never the whole dataset at once), tables as rows of strings."""

from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from service.catalogs import DatasetCatalog
from service.datasets.index import DatasetIndex
from service.datasets.reader import DataGone, IndexedReader
from service.datasets.storefile import open_blob
from service.indexes import dataset_identity
from service.storage import BlobNotFound
from service.uploaded_files import UploadedFiles
from service.uploads import UploadRejected
from worker.context import JobFailed
from worker.models import shapes
from worker.models.builtin import DATA

INDEX_CACHE_SIZE = 4  # indexes kept between jobs (a million images' index is some 100 MB)
# Tables kept read between jobs, so that a job explaining one row does not parse the whole CSV
# again; a CSV file above TABLE_CACHE_MAX_BYTES is read afresh by each job (as dicts of strings
# its rows take some ten times the file).
TABLE_CACHE_SIZE = 4
TABLE_CACHE_MAX_BYTES = 32 * 2**20
DERIVED_PER_TABLE = 4  # what kinds derive from one table (an encoding per feature manifest)

T = TypeVar("T")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise JobFailed("invalid-params", f"{name} is not a readable PNG or JPEG image", str(exc)) from exc


class LazyImages(Sequence):
    """The images of an ImageSet as a sequence: indexing or slicing reads and decodes only
    those asked for (`images[i:i + 64]` is one batch of reads)."""

    def __init__(self, image_set: ImageSet):
        self._set = image_set

    def __len__(self) -> int:
        return len(self._set)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            return self._set.read(range(*item.indices(len(self))))
        number = range(len(self))[item]  # negative indexes, IndexError past the end
        return self._set.read([number])[0]


class ImageSet:
    """A dataset's images: `names`, `labels` (class index per image, -1 for none, with
    `classes` their names; service.datasets.index.NO_LABEL), and the pictures (uint8 [H, W, 3] RGB; sizes may differ) through
    `read(indices)`, `batches(size)` or the lazy sequence `images`."""

    def __init__(
        self,
        names: list[str],
        read: Callable[[Sequence[int]], list[np.ndarray]],
        labels: Sequence[int] | None = None,
        classes: list[str] | None = None,
    ):
        self.names = names
        self._read = read
        self.labels = labels
        self.classes = classes
        self.images = LazyImages(self)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        return self._read(list(indices))

    def batches(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(first index, pictures) of consecutive batches of at most `size` images."""
        for start in range(0, len(self), size):
            yield start, self.read(range(start, min(start + size, len(self))))


class Table:
    """A CSV dataset's rows as read (dicts of strings), and what job kinds derive from them,
    both kept by the worker while the dataset's content stays the same. The rows are shared by
    the jobs that read the table: never modify them."""

    def __init__(self, identity: str, rows: list[dict[str, str]]):
        self.identity = identity  # the content's identity (table_identity)
        self.rows = rows
        self._derived: OrderedDict[Hashable, Any] = OrderedDict()

    def derived(self, key: Hashable, build: Callable[[list[dict[str, str]]], T]) -> T:
        """`build(rows)`, made once per `key` while the table is kept (the last DERIVED_PER_TABLE
        keys used): e.g. the rows checked and encoded with a model's feature manifest."""
        if key in self._derived:
            self._derived.move_to_end(key)
            return self._derived[key]
        value = build(self.rows)
        self._derived[key] = value
        while len(self._derived) > DERIVED_PER_TABLE:
            self._derived.popitem(last=False)
        return value


def table_identity(record: dict[str, Any]) -> str:
    """What identifies a table's content: the dataset's identity (its files' sha256, service/
    indexes.py) and its files' storage keys (unique per upload, for files without a sha256)."""
    keys = [f.get("key") for f in record.get("files") or [] if isinstance(f, dict)]
    return json.dumps([dataset_identity(record), keys])


class DatasetLoader:
    def __init__(self, catalog: DatasetCatalog, files: UploadedFiles, roots: list[str]):
        self.catalog = catalog
        self.files = files
        self.roots = roots
        self._indexes: OrderedDict[str, DatasetIndex] = OrderedDict()
        self._tables: OrderedDict[str, Table] = OrderedDict()

    def _find(self, tenant: str, dataset_id: str) -> tuple[str, dict]:
        found = self.catalog.find(tenant, dataset_id)
        if found is None:
            raise JobFailed("invalid-params", "No such dataset", f"{dataset_id!r} (deleted?)")
        return found

    def images(self, tenant: str, dataset_id: str) -> ImageSet:
        _, record = self._find(tenant, dataset_id)
        if record["kind"] != "images":
            raise JobFailed("invalid-params", "Not an image dataset", f"{dataset_id!r} is a {record['kind']}")
        if record["source"] == "builtin":
            if dataset_id != "shapes-val":
                raise JobFailed("invalid-params", "Unknown built-in dataset", dataset_id)
            pictures, labels = shapes.shapes_val()
            names = [f"{i:04d}-{shapes.SHAPES_CLASSES[int(label)].replace(' ', '-')}.png" for i, label in enumerate(labels)]
            return ImageSet(names, lambda indices: [pictures[i] for i in indices], [int(v) for v in labels],
                            list(shapes.SHAPES_CLASSES))  # fmt: skip
        self._require_ready(dataset_id, record)
        index = self.index(dataset_id, record)
        reader = IndexedReader(index, self.files.store, self.roots)

        def read(indices: Sequence[int]) -> list[np.ndarray]:
            try:
                contents = reader.read(indices)
            except (DataGone, BlobNotFound) as exc:
                raise JobFailed("invalid-params", "The dataset's files are gone", f"{dataset_id!r}: {exc}") from exc
            except UploadRejected as exc:
                raise JobFailed("invalid-params", "The dataset's files changed since it was indexed", str(exc)) from exc
            return [decode_image(data, index.names[i]) for data, i in zip(contents, indices)]

        labels = index.labels if index.classes else None
        return ImageSet(index.names, read, labels, index.classes)

    def index(self, dataset_id: str, record: dict[str, Any]) -> DatasetIndex:
        key = (record.get("index") or {}).get("key")
        if not key:
            raise JobFailed("invalid-params", "The dataset has no index", f"{dataset_id!r} (uploaded before the blob store and not moved yet?)")
        if key in self._indexes:
            self._indexes.move_to_end(key)
            return self._indexes[key]
        try:
            index = DatasetIndex.from_bytes(self.files.store.get_bytes(key))
        except BlobNotFound as exc:
            raise JobFailed("invalid-params", "The dataset's files are gone", f"{dataset_id!r} (deleted?)") from exc
        self._indexes[key] = index
        while len(self._indexes) > INDEX_CACHE_SIZE:
            self._indexes.popitem(last=False)
        return index

    @staticmethod
    def _require_ready(dataset_id: str, record: dict[str, Any]) -> None:
        status = record.get("status", "ready")
        if status != "ready":
            reason = record.get("error") or f"being indexed by job {record.get('indexing_job')}"
            raise JobFailed("invalid-params", f"The dataset is {status}", f"{dataset_id!r}: {reason}")

    def table(self, tenant: str, dataset_id: str) -> list[dict[str, str]]:
        """A CSV dataset's rows (shared with other jobs: never modify them)."""
        return self.table_view(tenant, dataset_id).rows

    def table_view(self, tenant: str, dataset_id: str) -> Table:
        """A CSV dataset as a `Table`: read once per content and kept (the last TABLE_CACHE_SIZE
        tables used, files up to TABLE_CACHE_MAX_BYTES); a new upload under the same id is
        another content, read afresh. The record is read each time: a deleted dataset fails."""
        _, record = self._find(tenant, dataset_id)
        if record["kind"] != "table":
            raise JobFailed("invalid-params", "Not a table dataset", f"{dataset_id!r} holds {record['kind']}")
        identity = table_identity(record)
        if identity in self._tables:
            self._tables.move_to_end(identity)
            return self._tables[identity]
        table = Table(identity, self._read_table(dataset_id, record))
        if sum(int(f.get("bytes") or 0) for f in record.get("files") or []) <= TABLE_CACHE_MAX_BYTES:
            self._tables[identity] = table
            while len(self._tables) > TABLE_CACHE_SIZE:
                self._tables.popitem(last=False)
        return table

    def _read_table(self, dataset_id: str, record: dict[str, Any]) -> list[dict[str, str]]:
        if record["source"] == "builtin":
            with open(DATA / f"{dataset_id}.csv", "rb") as file:
                return _rows(file)
        stored = record.get("files") or []
        if not stored:
            raise JobFailed("invalid-params", "The dataset has no file", f"{dataset_id!r} (uploaded before the blob store and not moved yet?)")
        try:
            file, _ = open_blob(self.files.store, stored[0]["key"], stored[0].get("bytes"))
        except BlobNotFound as exc:
            raise JobFailed("invalid-params", "The dataset's file is gone", dataset_id) from exc
        with file:
            return _rows(file)


def _rows(file: Any) -> list[dict[str, str]]:
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    return list(csv.DictReader(text))

