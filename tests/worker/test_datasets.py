"""The worker's view of a dataset (worker/datasets.py), in this process against the session's
Redis and a file blob store: images by number, in batches or as a lazy sequence, decoded to the
pixels Pillow gives for the same files; labels as indexed; refusals as job failures."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import redis
from PIL import Image

from service.catalogs import DatasetCatalog
from service.datasets import uploads
from service.keys import Keys
from service.settings import Settings
from service.storage import FileBlobStore
from service.uploaded_files import UploadedFiles
from tests.e2e.dataset_files import image_folder, tar_of
from worker.context import JobFailed
from worker.datasets import DatasetLoader

IMAGES = image_folder(9)
NAMES = sorted(IMAGES)


def pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(IMAGES[name])).convert("RGB"))


@pytest.fixture
def loader(redis_url, tmp_path) -> DatasetLoader:
    settings = Settings(namespace=f"wd{uuid.uuid4().hex[:8]}")
    connection = redis.Redis.from_url(redis_url)
    files = UploadedFiles(connection, Keys(settings.namespace), FileBlobStore(tmp_path / "blobs"))
    part = uploads.UploadedPart("pics.tar", io.BytesIO(tar_of(IMAGES)))
    uploads.store(files, uploads.prepare([part]), "alice", "pics")
    return DatasetLoader(DatasetCatalog(connection, settings), files, [])


def test_images_come_by_number_in_batches_or_lazily_with_their_labels(loader):
    images = loader.images("alice", "pics")
    assert images.names == NAMES and len(images) == 9
    assert images.classes == sorted({n.split("/")[0] for n in NAMES})
    assert [images.classes[label] for label in images.labels] == [n.split("/")[0] for n in NAMES]
    batches = list(images.batches(4))
    assert [start for start, _ in batches] == [0, 4, 8] and [len(b) for _, b in batches] == [4, 4, 1]
    for start, batch in batches:
        for offset, picture in enumerate(batch):
            assert np.array_equal(picture, pixels(NAMES[start + offset]))
    assert np.array_equal(images.images[-1], pixels(NAMES[-1]))
    assert [p.shape for p in images.images[2:5]] == [(64, 64, 3)] * 3
    assert np.array_equal(images.read([5])[0], pixels(NAMES[5]))
    with pytest.raises(IndexError):
        images.images[9]


def test_a_dataset_deleted_or_not_ready_fails_the_job_saying_so(loader):
    images = loader.images("alice", "pics")
    record = loader.files.remove("datasets", "alice", "pics")
    loader.files.leases.sweep(loader.files.store)
    with pytest.raises(JobFailed, match="files are gone"):
        images.read([0])
    with pytest.raises(JobFailed, match="No such dataset"):
        loader.images("alice", "pics")
    loader.catalog.put("alice", "pending", {**record, "id": "pending", "status": "pending", "indexing_job": "j1"})
    with pytest.raises(JobFailed, match="The dataset is pending"):
        loader.images("alice", "pending")
