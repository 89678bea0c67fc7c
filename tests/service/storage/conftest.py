"""Every storage test runs on both backends: a directory, and a real SeaweedFS S3 server
started once per session (stopped at the end). Each s3 test gets its own key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.settings import Settings
from service.storage import BlobStore, FileBlobStore, open_blob_store
from tests.service.storage.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedS3

BUCKET = "glassbox-test"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@dataclass
class Backend:
    name: str
    store: BlobStore
    # Uploads begun and not finished: the file backend's temporary files, or the multipart
    # uploads the S3 server holds. Empty after every put, failed or not.
    pending_uploads: Callable[[], list[str]]


def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials the way a deployment gives them: the standard AWS variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "file":
        store = open_blob_store(Settings(blob_url=(tmp_path / "blobs").as_uri()))
        assert isinstance(store, FileBlobStore)
        return Backend("file", store, lambda: [str(p) for p in (store.root / ".tmp").iterdir()])
    server: SeaweedS3 = request.getfixturevalue("seaweed")
    s3_env(monkeypatch)
    settings = Settings(
        blob_url=f"s3://{BUCKET}/test-{uuid.uuid4().hex[:12]}", s3_endpoint_url=server.endpoint, s3_allow_http=True
    )
    return Backend("s3", open_blob_store(settings), lambda: server.pending_multipart_uploads(BUCKET))


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return backend.store
