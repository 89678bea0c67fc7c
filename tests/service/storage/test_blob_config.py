"""Choosing and configuring a blob store from Settings, and what only one backend has."""

from __future__ import annotations

import os
import time
from pathlib import Path

import obstore
import pytest
from pydantic import ValidationError

from service.settings import Settings
from service.storage import FileBlobStore, open_blob_store, parse_blob_url
from service.storage.s3_store import S3BlobStore
from tests.service.storage.conftest import BUCKET, s3_env


def test_default_store_is_a_directory_under_data_dir(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_blob_store(Settings(data_dir="state"))
    assert isinstance(store, FileBlobStore)
    assert store.root == tmp_path / "state" / "blobs"
    assert store.url == (tmp_path / "state" / "blobs").as_uri()


def test_blob_url_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_BLOB_URL", (tmp_path / "elsewhere").as_uri())
    store = open_blob_store(Settings())
    assert isinstance(store, FileBlobStore) and store.root == tmp_path / "elsewhere"
    store.put_bytes("a/b", b"data")
    assert (tmp_path / "elsewhere" / "a" / "b").read_bytes() == b"data"


@pytest.mark.parametrize(
    "url",
    ["http://host/x", "file://relative/path", "file:relative", "s3://", "s3:///prefix", "s3://bucket/../up", "ftp://x"],
)
def test_bad_blob_urls_are_refused_naming_the_setting_and_forms(url: str):
    with pytest.raises(ValidationError) as refused:
        Settings(blob_url=url)
    message = str(refused.value)
    assert "blob_url" in message and "s3://bucket/prefix" in message


def test_parse_blob_url():
    assert parse_blob_url("file:///srv/blobs") == ("file", "/srv/blobs", "")
    assert parse_blob_url("file://localhost/srv/my%20blobs") == ("file", "/srv/my blobs", "")
    assert parse_blob_url("s3://bucket") == ("s3", "bucket", "")
    assert parse_blob_url("s3://bucket/deploy/one/") == ("s3", "bucket", "deploy/one")


def test_plain_http_endpoint_needs_allow_http():
    settings = Settings(blob_url="s3://bucket", s3_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="GLASSBOX_S3_ALLOW_HTTP"):
        open_blob_store(settings)


def test_presign_settings():
    assert (Settings().presign_downloads, Settings().presign_expires_seconds) == (False, 300)
    for bad in (0, 8 * 24 * 3600):
        with pytest.raises(ValidationError, match="presign_expires_seconds"):
            Settings(presign_expires_seconds=bad)


def test_s3_prefix_isolates_deployments_in_one_bucket(seaweed, monkeypatch):
    s3_env(monkeypatch)

    def opened(prefix: str) -> S3BlobStore:
        settings = Settings(blob_url=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=seaweed.endpoint, s3_allow_http=True)
        store = open_blob_store(settings)
        assert isinstance(store, S3BlobStore) and store.url == f"s3://{BUCKET}/{prefix}"
        return store

    first, second = opened("deploy-a"), opened("deploy-b/nested")
    first.put_bytes("jobs/1/result.json", b"a")
    second.put_bytes("jobs/1/result.json", b"b")
    raw = seaweed.raw_store(BUCKET)
    raw_keys = {entry["path"] for batch in obstore.list(raw, prefix="deploy-a") for entry in batch}
    assert raw_keys == {"deploy-a/jobs/1/result.json"}
    assert [meta.key for meta in first.list_blobs()] == ["jobs/1/result.json"]
    assert first.get_bytes("jobs/1/result.json") == b"a" and second.get_bytes("jobs/1/result.json") == b"b"
    assert first.delete_prefix("jobs") == 1
    assert second.get_bytes("jobs/1/result.json") == b"b"
    second.delete_prefix("jobs")


def test_wrong_credentials_are_refused(seaweed, monkeypatch):
    s3_env(monkeypatch)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    settings = Settings(blob_url=f"s3://{BUCKET}/creds", s3_endpoint_url=seaweed.endpoint, s3_allow_http=True)
    with pytest.raises(obstore.exceptions.PermissionDeniedError):
        open_blob_store(settings).put_bytes("x", b"x")


# ---------------------------------------------------------------------- file backend only


def test_file_backend_discards_old_abandoned_uploads_only(tmp_path: Path):
    store = FileBlobStore(tmp_path)
    stale, fresh = tmp_path / ".tmp" / "crashed.part", tmp_path / ".tmp" / "in-flight.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert list(store.list_blobs()) == []  # temporaries are never blobs
    assert store.discard_abandoned_uploads(older_than_seconds=600) == 1
    assert not stale.exists() and fresh.exists()


def test_file_backend_leaves_no_empty_folders(tmp_path: Path):
    store = FileBlobStore(tmp_path)
    store.put_bytes("jobs/1/deep/a", b"x")
    store.put_bytes("jobs/2/b", b"x")
    store.delete("jobs/1/deep/a")
    store.delete_prefix("jobs/2")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp"]
    store.put_bytes("jobs/1/deep/a", b"again")  # publishing recreates the folders
    assert store.get_bytes("jobs/1/deep/a") == b"again"
