"""Datasets as job functions read them: images through the dataset's index, decoded when asked
for (a batch at a time, never the whole dataset at once), tables as rows of strings."""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from service.catalogs import DatasetCatalog
from service.datasets.index import DatasetIndex
from service.datasets.reader import DataGone, IndexedReader
from service.datasets.storefile import open_blob
from service.storage import BlobNotFound
from service.uploaded_files import UploadedFiles
from service.uploads import UploadRejected
from worker.context import JobFailed
from worker.models import shapes
from worker.models.builtin import DATA

INDEX_CACHE_SIZE = 4  # indexes kept between jobs (a million images' index is some 100 MB)


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


class DatasetLoader:
    def __init__(self, catalog: DatasetCatalog, files: UploadedFiles, roots: list[str]):
        self.catalog = catalog
        self.files = files
        self.roots = roots
        self._indexes: OrderedDict[str, DatasetIndex] = OrderedDict()

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
        _, record = self._find(tenant, dataset_id)
        if record["kind"] != "table":
            raise JobFailed("invalid-params", "Not a table dataset", f"{dataset_id!r} holds {record['kind']}")
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

