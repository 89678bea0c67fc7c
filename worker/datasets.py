"""Datasets as job functions read them: images as uint8 arrays, tables as rows of strings."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.blobs import RedisUploads
from service.catalogs import DatasetCatalog
from worker.context import JobFailed
from worker.models import shapes
from worker.models.builtin import DATA


@dataclass
class ImageSet:
    names: list[str]
    images: list[np.ndarray]  # uint8 [H, W, 3] (RGB) each; sizes may differ


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise JobFailed("invalid-params", f"{name} is not a readable PNG or JPEG image", str(exc)) from exc


class DatasetLoader:
    def __init__(self, catalog: DatasetCatalog, blobs: RedisUploads):
        self.catalog = catalog
        self.blobs = blobs

    def _find(self, tenant: str, dataset_id: str) -> tuple[str, dict]:
        found = self.catalog.find(tenant, dataset_id)
        if found is None:
            raise JobFailed("invalid-params", "No such dataset", f"{dataset_id!r} (deleted?)")
        return found

    def images(self, tenant: str, dataset_id: str) -> ImageSet:
        scope, record = self._find(tenant, dataset_id)
        if record["kind"] != "images":
            raise JobFailed("invalid-params", "Not an image dataset", f"{dataset_id!r} is a {record['kind']}")
        if record["source"] == "builtin":
            if dataset_id != "shapes-val":
                raise JobFailed("invalid-params", "Unknown built-in dataset", dataset_id)
            images, labels = shapes.shapes_val()
            names = [f"{i:04d}-{shapes.SHAPES_CLASSES[int(label)].replace(' ', '-')}.png" for i, label in enumerate(labels)]
            return ImageSet(names, list(images))
        archive = zipfile.ZipFile(io.BytesIO(self._blob(scope, dataset_id)))
        names = record.get("names") or sorted(
            i.filename for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")
        )
        return ImageSet(names, [decode_image(archive.read(name), name) for name in names])

    def table(self, tenant: str, dataset_id: str) -> list[dict[str, str]]:
        scope, record = self._find(tenant, dataset_id)
        if record["kind"] != "table":
            raise JobFailed("invalid-params", "Not a table dataset", f"{dataset_id!r} holds {record['kind']}")
        if record["source"] == "builtin":
            data = (DATA / f"{dataset_id}.csv").read_bytes()
        else:
            data = self._blob(scope, dataset_id)
        return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))

    def _blob(self, scope: str, dataset_id: str) -> bytes:
        data = self.blobs.get("datasets", scope, dataset_id)
        if data is None:
            raise JobFailed("invalid-params", "The dataset's file is gone", dataset_id)
        return data
