"""Datasets in the blob store, on both backends (a directory, and a real SeaweedFS S3 server):
uploads streamed in with their index beside them, sources indexed in place through ranged
reads, single images read back by their numbers, and a worker of a stack on each backend reading
an uploaded and a registered dataset for a job."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import redis

from service.datasets import uploads
from service.datasets.index import INDEX_NAME, DatasetIndex
from service.datasets.reader import IndexedReader
from service.datasets.sources import Source, index_source
from service.keys import Keys
from service.storage import BlobTooLarge
from service.uploaded_files import UploadedFiles
from tests.e2e.dataset_files import image_folder, inline, png, tar_of, zip_of
from tests.service.storage.conftest import BUCKET, Backend, s3_env

IMAGES = image_folder(10)
NAMES = sorted(IMAGES)


@pytest.fixture
def files(backend: Backend, redis_url: str) -> UploadedFiles:
    return UploadedFiles(redis.Redis.from_url(redis_url), Keys(f"ds{uuid.uuid4().hex[:8]}"), backend.store)


@pytest.mark.parametrize("layout", ["zip", "tar", "shards"])
def test_an_upload_goes_in_with_its_index_and_any_image_comes_back_by_number(files: UploadedFiles, backend, layout):
    if layout == "shards":
        parts = [uploads.UploadedPart("a.tar", io.BytesIO(tar_of({n: IMAGES[n] for n in NAMES[:4]}))),
                 uploads.UploadedPart("b.tar", io.BytesIO(tar_of({n: IMAGES[n] for n in NAMES[4:]})))]  # fmt: skip
        expected = [f"a.tar/{n}" for n in NAMES[:4]] + [f"b.tar/{n}" for n in NAMES[4:]]
    else:
        data = zip_of(IMAGES) if layout == "zip" else tar_of(IMAGES)
        parts, expected = [uploads.UploadedPart(f"x.{layout}", io.BytesIO(data))], NAMES
    record = uploads.store(files, uploads.prepare(parts), "alice", "pics")
    assert record["count"] == len(IMAGES) and not files.redis.zcard(files.leases.key)  # published: no lease
    stored = {b.key for b in backend.store.list_blobs(record["prefix"])}
    assert stored == {f["key"] for f in record["files"]} | {record["index"]["key"]}
    assert record["index"]["key"] == f"{record['prefix']}/{INDEX_NAME}"
    index = DatasetIndex.from_bytes(backend.store.get_bytes(record["index"]["key"]))
    assert index.names == expected
    reader = IndexedReader(index, backend.store, [])
    wanted = [7, 0, 4, 3, 9]
    assert reader.read(wanted) == [IMAGES[expected[i].split("/", 1)[-1] if layout == "shards" else expected[i]] for i in wanted]
    assert files.remove("datasets", "alice", "pics")["prefix"] == record["prefix"]
    assert files.leases.sweep(backend.store) == len(stored) and not list(backend.store.list_blobs(record["prefix"]))


def test_an_upload_over_the_limit_leaves_no_file_no_lease_and_no_partial_upload(files: UploadedFiles, backend):
    prepared = uploads.prepare([uploads.UploadedPart("x.tar", io.BytesIO(tar_of(IMAGES)))])
    with pytest.raises(BlobTooLarge):
        uploads.store(files, prepared, "alice", "big", max_bytes=10_000)
    assert not list(backend.store.list_blobs("datasets/alice/big"))
    assert not files.redis.zcard(files.leases.key) and not files.redis.hgetall(files.keys.catalog("datasets", "alice"))
    assert backend.pending_uploads() == []


@pytest.mark.parametrize("layout", ["tar", "shards", "files"])
def test_a_store_source_is_indexed_where_it_is_through_ranged_reads(backend, layout):
    store = backend.store
    base = f"sources/alice/{uuid.uuid4().hex[:8]}/set"
    if layout == "tar":
        store.put_bytes(f"{base}", tar_of(IMAGES))
        expected = NAMES
    elif layout == "shards":
        store.put_bytes(f"{base}/s-0.tar", tar_of({n: IMAGES[n] for n in NAMES[:6]}))
        store.put_bytes(f"{base}/s-1.tar", tar_of({n: IMAGES[n] for n in NAMES[6:]}))
        expected = [f"s-0.tar/{n}" for n in NAMES[:6]] + [f"s-1.tar/{n}" for n in NAMES[6:]]
    else:
        for name, data in IMAGES.items():
            store.put_bytes(f"{base}/{name}", data)
        store.put_bytes(f"{base}/LICENSE", b"text")
        expected = NAMES
    index = index_source(Source("store", base, f"store:{base}"), store, [])
    assert index.names == expected and index.classes == sorted({n.split("/")[0] for n in NAMES})
    reader = IndexedReader(DatasetIndex.from_bytes(index.to_bytes()), store, [])
    assert [d for d in reader.read(range(len(expected)))] == [IMAGES[n.split("/", 1)[-1] if layout == "shards" else n] for n in expected]
    assert index.skipped == (["LICENSE"] if layout == "files" else [])


# ---- a stack on each backend -----------------------------------------------------------------


@pytest.fixture(params=["file", "s3"])
def backend_stack(request, make_stack, tmp_path, monkeypatch):
    if request.param == "file":
        return make_stack(blob_url=(tmp_path / "blobs").as_uri())
    server = request.getfixturevalue("seaweed")
    s3_env(monkeypatch)  # the stack's processes get the AWS variables from this environment
    return make_stack(
        blob_url=f"s3://{BUCKET}/stack-{uuid.uuid4().hex[:10]}", s3_endpoint_url=server.endpoint, s3_allow_http="true"
    )


def deconvnet_items(stack, client, **source) -> list[dict]:
    params = {"layer": "features.3", "top_channels": 2, "top_k": 3, **source}
    job = client.post("/v1/jobs", json={"kind": "deconvnet", "model": "shapes-cnn", "params": params})
    assert job.status_code == 202, job.text
    done = stack.wait_status(client, job.json()["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    return [{**i, "image_name": None} for i in json.loads(client.get(f"/v1/jobs/{done['id']}/artifacts/result.json").content)["items"]]


def test_a_worker_reads_uploaded_and_registered_datasets_from_the_store(backend_stack):
    stack, client = backend_stack, backend_stack.client()
    created = client.post("/v1/datasets", files={"file": ("pics.tar", tar_of(IMAGES))}, data={"name": "pics"})
    assert created.status_code == 201, created.text
    store = stack.blob_store()
    base = f"sources/alice/{stack.namespace}/folder"
    for name, data in IMAGES.items():
        store.put_bytes(f"{base}/{name}", data)
    registered = client.post("/v1/datasets", json={"name": "folder", "source": f"store:{base}"})
    assert registered.status_code == 202, registered.text
    indexing = stack.wait_status(client, registered.json()["indexing_job"], {"succeeded", "failed"}, timeout=60)
    assert indexing["status"] == "succeeded", indexing["error"]
    by_inline = deconvnet_items(stack, client, images=inline(IMAGES))
    assert by_inline and deconvnet_items(stack, client, dataset="pics") == by_inline
    assert deconvnet_items(stack, client, dataset="folder") == by_inline
    assert client.post("/v1/datasets", files={"file": ("x.png", png())}).status_code == 422
