"""Artifact downloads from the blob store: ranges, HEAD, nested names, and artifacts of jobs
finished before the upgrade (still Redis keys until they expire)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from service.jobstore import ArtifactBlob

pytestmark = pytest.mark.anyio
DATA = os.urandom(3000)


async def finished_job(api, artifacts: list[ArtifactBlob]) -> str:
    job = await api.create()
    api.runs.start(job["id"], "w1")
    assert api.succeed(job["id"], "w1", artifacts) == "finished"
    return job["id"]


async def test_a_range_is_206_with_content_range_and_past_the_end_is_416(api):
    job_id = await finished_job(api, [ArtifactBlob("data.bin", "application/octet-stream", DATA)])
    url = f"/v1/jobs/{job_id}/artifacts/data.bin"
    whole = await api.alice.get(url)
    assert whole.status_code == 200 and whole.content == DATA and whole.headers["accept-ranges"] == "bytes"
    for header, start, end in (("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=2990-", 2990, 3000),
                               ("bytes=-10", 2990, 3000), ("bytes=2500-99999", 2500, 3000)):  # fmt: skip
        part = await api.alice.get(url, headers={"Range": header})
        assert part.status_code == 206 and part.content == DATA[start:end], header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/3000"
        assert part.headers["content-length"] == str(end - start)
    past = await api.alice.get(url, headers={"Range": "bytes=3000-"})
    assert past.status_code == 416 and past.headers["content-range"] == "bytes */3000"
    assert past.headers["content-type"] == "application/problem+json"
    several = await api.alice.get(url, headers={"Range": "bytes=0-1,5-6"})  # not served as ranges: the whole file
    assert several.status_code == 200 and several.content == DATA
    stale = await api.alice.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == DATA  # the validator does not match: the whole file
    head = await api.alice.head(url, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.content == b"" and head.headers["content-length"] == "10"


async def test_artifact_names_may_hold_folders(api):
    job_id = await finished_job(
        api,
        [ArtifactBlob("units/3/fv.png", "image/png", b"png"), ArtifactBlob("atlas.json", "application/json", b"{}")],
    )
    got = await api.alice.get(f"/v1/jobs/{job_id}/artifacts/units/3/fv.png")
    assert got.status_code == 200 and got.content == b"png"
    job = (await api.alice.get(f"/v1/jobs/{job_id}")).json()
    assert [a["url"] for a in job["result"]["artifacts"]] == [
        f"/v1/jobs/{job_id}/artifacts/units/3/fv.png",
        f"/v1/jobs/{job_id}/artifacts/atlas.json",
    ]
    escape = await api.alice.get(f"/v1/jobs/{job_id}/artifacts/units/%2e%2e/atlas.json")
    assert escape.status_code in (404, 422)


async def test_a_job_finished_before_the_blob_store_keeps_serving_its_redis_artifacts(api):
    """An in-place upgrade: records and artifact keys written by the previous version."""
    job = await api.create()
    keys = api.store.keys
    data = b"written by the old version"
    ref = {"name": "old.txt", "content_type": "text/plain", "bytes": len(data),
           "sha256": hashlib.sha256(data).hexdigest(), "url": f"/v1/jobs/{job['id']}/artifacts/old.txt"}  # fmt: skip
    api.store.redis.hset(
        keys.job(job["id"]), mapping={"status": "succeeded", "result": json.dumps({"artifacts": [ref], "summary": {}})}
    )
    api.store.redis.set(keys.artifact(job["id"], "old.txt"), data, ex=3600)
    api.store.redis.publish(keys.events(job["id"]), "{}")  # what any write does: drop cached copies
    got = await api.alice.get(f"/v1/jobs/{job['id']}/artifacts/old.txt")
    assert got.status_code == 200 and got.content == data and got.headers["etag"] == f'"{ref["sha256"]}"'
    assert (await api.alice.delete(f"/v1/jobs/{job['id']}")).status_code == 204
    assert api.store.redis.get(keys.artifact(job["id"], "old.txt")) is None


async def test_an_empty_artifact_downloads_as_zero_bytes(api):
    job_id = await finished_job(api, [ArtifactBlob("empty.bin", "application/octet-stream", b"")])
    got = await api.alice.get(f"/v1/jobs/{job_id}/artifacts/empty.bin")
    assert got.status_code == 200 and got.content == b"" and got.headers["content-length"] == "0"
    assert got.headers["etag"] == f'"{hashlib.sha256(b"").hexdigest()}"'


async def test_a_small_file_is_answered_whole_and_a_large_one_streamed_with_the_same_headers(api):
    from service.api.downloads import SMALL_BODY_BYTES

    large = os.urandom(SMALL_BODY_BYTES * 3 + 7)
    small = large[:SMALL_BODY_BYTES]  # the largest answered whole
    job_id = await finished_job(api, [ArtifactBlob("large.bin", "application/octet-stream", large),
                                      ArtifactBlob("small.bin", "application/octet-stream", small)])  # fmt: skip
    answers = {}
    for name, data in (("large.bin", large), ("small.bin", small)):
        whole = await api.alice.get(f"/v1/jobs/{job_id}/artifacts/{name}")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-length"] == str(len(data))
        assert whole.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        answers[name] = {
            k: v for k, v in whole.headers.items() if k not in ("content-length", "etag", "content-disposition")
        }
        # a range of the large file small enough to be read whole, and one that streams
        for start, end in ((5, 5 + SMALL_BODY_BYTES), (1, len(data))):
            part = await api.alice.get(
                f"/v1/jobs/{job_id}/artifacts/{name}", headers={"Range": f"bytes={start}-{end - 1}"}
            )
            assert part.status_code == 206 and part.content == data[start:end], (name, start, end)
    assert answers["large.bin"] == answers["small.bin"]
