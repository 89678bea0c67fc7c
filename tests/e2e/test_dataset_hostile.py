"""Hostile datasets at the new paths, through HTTP: tar entries that climb out, links, devices,
tar and zip bombs, decompression-bomb images, compressed or mixed shards, sources outside the
allowed roots, links leading out of them, another tenant's store prefix. Each is a 422 naming
the entry (or the allowed roots or prefix), and leaves nothing behind: no record, no file in
the blob store, no lease, no job."""

from __future__ import annotations

import gzip
import os
import tarfile

import pytest

from tests.conftest import ALICE, BOB, started_stack
from tests.e2e.dataset_files import png, png_declaring, tar_info, tar_of, zip_of
from tests.e2e.test_jobs_api import assert_problem

pytestmark = pytest.mark.slow

IMAGE = png()


def pax_bomb() -> bytes:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 3 * 1024 * 1024
    return header.tobuf(format=tarfile.USTAR_FORMAT) + b"9" * header.size + bytes(1024)


UPLOADS = [
    ("evil.tar", tar_of({"ok.png": IMAGE, "../evil.png": IMAGE}), "tar entry '../evil.png' has an unsafe path"),
    ("abs.tar", tar_of({"/etc/cron.d/evil.png": IMAGE}), "tar entry '/etc/cron.d/evil.png' has an unsafe path"),
    ("deep.tar", tar_of({"a/../../evil.png": IMAGE}), "tar entry 'a/../../evil.png' has an unsafe path"),
    ("link.tar", tar_of([tar_info("ok.png", IMAGE), tar_info("shadow.png", kind=tarfile.SYMTYPE, link="/etc/shadow")]),
     "tar entry 'shadow.png' is a symbolic link (to '/etc/shadow')"),
    ("hard.tar", tar_of([tar_info("ok.png", IMAGE), tar_info("h.png", kind=tarfile.LNKTYPE, link="ok.png")]),
     "tar entry 'h.png' is a hard link"),
    ("dev.tar", tar_of([tar_info("ok.png", IMAGE), tar_info("sda", kind=tarfile.BLKTYPE)]), "tar entry 'sda' is a block device"),
    ("pax.tar", pax_bomb(), "extended header"),
    ("pixels.tar", tar_of({"huge.png": png_declaring(100_000, 100_000)}), "'huge.png'"),
    ("gz.tar", gzip.compress(tar_of({"a.png": IMAGE})), "gzip-compressed"),
    ("bomb.zip", zip_of({"zeros.png": bytes(60_000_000)}), "zip entry 'zeros.png' expands"),
]  # fmt: skip


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def hostile_stack(redis_url, tmp_path_factory, roots):
    with started_stack(redis_url, tmp_path_factory, dataset_roots=str(roots)) as stack:
        yield stack


def trace(stack, tenant: str = "alice") -> dict:
    """What a refused request could have left: records, files, leases, jobs."""
    ns = stack.namespace
    return {
        "records": sorted(stack.redis.hkeys(f"{ns}:datasets:{tenant}")),
        "files": sorted(b.key for b in stack.blob_store().list_blobs(f"datasets/{tenant}")),
        "leases": stack.redis.zrange(f"{ns}:blob-leases", 0, -1),
        "jobs": stack.redis.zcard(f"{ns}:tenant:{tenant}:jobs"),
    }


@pytest.mark.parametrize("filename, data, needle", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_a_hostile_archive_is_refused_naming_the_entry_and_leaves_nothing(hostile_stack, filename, data, needle):
    client = hostile_stack.client()
    before = trace(hostile_stack)
    problem = assert_problem(client.post("/v1/datasets", files={"file": (filename, data)}), 422)
    assert needle in problem["detail"], problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "file"]
    assert trace(hostile_stack) == before


def test_shards_with_a_zip_or_a_hostile_member_are_refused_as_a_whole(hostile_stack):
    client = hostile_stack.client()
    before = trace(hostile_stack)
    good = tar_of({"a.png": IMAGE})
    mixed = [("file", ("a.tar", good)), ("file", ("b.zip", zip_of({"b.png": IMAGE})))]
    assert "'b.zip' is a zip" in assert_problem(client.post("/v1/datasets", files=mixed, data={"name": "m"}), 422)["detail"]
    climbing = [("file", ("a.tar", good)), ("file", ("b.tar", tar_of({"../../b.png": IMAGE})))]
    detail = assert_problem(client.post("/v1/datasets", files=climbing, data={"name": "c"}), 422)["detail"]
    assert "tar entry '../../b.png' of 'b.tar' has an unsafe path" in detail
    assert trace(hostile_stack) == before


def test_sources_outside_the_roots_or_the_tenants_prefix_are_refused_naming_what_is_allowed(hostile_stack, roots, tmp_path):
    client = hostile_stack.client(ALICE)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(IMAGE)
    os.symlink(outside, roots / "escape")
    (roots / "inside").mkdir()
    hostile_stack.blob_store().put_bytes(f"sources/bob/{hostile_stack.namespace}/a.tar", tar_of({"a.png": IMAGE}))
    cases = [
        (outside.as_uri(), f"is outside the allowed roots: {roots}"),
        ((roots / "escape").as_uri(), f"leads out of the allowed roots through a symbolic link (to {outside})"),
        ((roots / "inside" / ".." / ".." / "outside").as_uri(), "is outside the allowed roots"),
        ((roots / "missing").as_uri(), "does not exist"),
        ("file://evil.example.com/data", "file:///absolute/path"),
        (f"store:sources/bob/{hostile_stack.namespace}/a.tar", "store:sources/alice/<path>"),
        ("store:sources/alice/../bob/x", "store:sources/alice/<path>"),
        ("store:sources/alice", "names your whole prefix"),
        ("store:sources/alice/nothing-here", "nothing is stored under"),
        ("s3://bucket/key", "unknown form"),
    ]
    before = trace(hostile_stack)
    for source, needle in cases:
        problem = assert_problem(client.post("/v1/datasets", json={"name": "x", "source": source}), 422)
        assert problem["type"].endswith("/invalid-source") and problem["errors"][0]["loc"] == ["body", "source"]
        assert needle in problem["detail"], (source, problem["detail"])
    assert trace(hostile_stack) == before


def test_file_sources_are_off_without_roots_and_a_json_body_is_checked_field_by_field(make_stack):
    stack = make_stack(workers=0)
    client = stack.client(BOB)
    off = assert_problem(client.post("/v1/datasets", json={"source": "file:///data"}), 422)
    assert "GLASSBOX_DATASET_ROOTS is empty" in off["detail"]
    extra = assert_problem(client.post("/v1/datasets", json={"source": "store:sources/bob/x", "file": "x"}), 422)
    assert "body.file" in extra["detail"] and "allowed: name, source, description" in extra["detail"]
    big = client.post("/v1/datasets", json={"source": "store:sources/bob/x", "description": "x" * 9_000_000})
    assert big.status_code == 413  # JSON gets the request limit, not the upload limit
    assert assert_problem(client.post("/v1/datasets", content=b"x", headers={"content-type": "text/plain"}), 415)


def test_a_link_out_inside_a_registered_folder_fails_its_indexing_and_writes_no_index(hostile_stack, roots, tmp_path):
    client = hostile_stack.client()
    folder = roots / "linked"
    folder.mkdir()
    (folder / "a.png").write_bytes(IMAGE)
    secret = tmp_path / "secret.png"
    secret.write_bytes(IMAGE)
    os.symlink(secret, folder / "b.png")
    answer = client.post("/v1/datasets", json={"source": folder.as_uri()})
    assert answer.status_code == 202, answer.text
    job = hostile_stack.wait_status(client, answer.json()["indexing_job"], {"succeeded", "failed"}, timeout=60)
    assert job["status"] == "failed" and "'b.png' is a symbolic link leading out" in job["error"]["detail"]
    record = client.get("/v1/datasets/linked").json()
    assert record["status"] == "failed" and "'b.png'" in record["error"]
    assert not list(hostile_stack.blob_store().list_blobs("datasets/alice/linked"))
    assert client.delete("/v1/datasets/linked").status_code == 204
