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
from worker import datasets
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


def upload_table(loader: DatasetLoader, dataset_id: str, text: str) -> None:
    """Upload `text` as CSV dataset `dataset_id` of alice, replacing any dataset of that id."""
    if loader.catalog.find("alice", dataset_id) is not None:
        loader.files.remove("datasets", "alice", dataset_id)
    part = uploads.UploadedPart(f"{dataset_id}.csv", io.BytesIO(text.encode()))
    uploads.store(loader.files, uploads.prepare([part]), "alice", dataset_id)


def test_a_table_is_read_once_per_content_and_what_is_derived_from_it_with_it(loader):
    upload_table(loader, "t", "a,b\n1,x\n2,y\n")
    builds: list[list[dict]] = []

    def build(rows):
        builds.append(rows)
        return [int(r["a"]) * 10 for r in rows]

    first = loader.table_view("alice", "t")
    assert first.rows == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}] and loader.table("alice", "t") == first.rows
    assert first.derived("tens", build) == [10, 20] and first.derived("tens", build) == [10, 20]
    again = loader.table_view("alice", "t")
    assert again is first and again.derived("tens", build) == [10, 20] and len(builds) == 1  # kept, not rebuilt

    # new content under the same id: read afresh, and derived afresh from the new rows
    upload_table(loader, "t", "a,b\n3,z\n")
    changed = loader.table_view("alice", "t")
    assert changed is not first and changed.identity != first.identity
    assert changed.rows == [{"a": "3", "b": "z"}] and changed.derived("tens", build) == [30] and len(builds) == 2
    assert loader.table_view("alice", "t") is changed  # and kept in turn

    # the kept tables are the last ones used; an older one is read again when asked for
    for number in range(datasets.TABLE_CACHE_SIZE):
        upload_table(loader, f"other{number}", f"a\n{number}\n")
        loader.table_view("alice", f"other{number}")
    assert loader.table_view("alice", "t") is not changed
    assert loader.table_view("alice", "t").rows == changed.rows
    with pytest.raises(JobFailed, match="Not a table dataset"):
        loader.table_view("alice", "pics")


def test_what_is_derived_from_a_table_keeps_its_last_keys(loader):
    upload_table(loader, "t", "a\n1\n")
    table = loader.table_view("alice", "t")
    made = []
    for key in range(datasets.DERIVED_PER_TABLE + 1):
        table.derived(key, lambda rows, key=key: made.append(key) or key)
    assert table.derived(datasets.DERIVED_PER_TABLE, lambda rows: made.append("again")) == datasets.DERIVED_PER_TABLE
    table.derived(0, lambda rows: made.append("0 again"))  # the oldest key went
    assert made == [*range(datasets.DERIVED_PER_TABLE + 1), "0 again"]
