"""A 300 MB dataset upload, made on the fly and streamed by the client (chunked, no
Content-Length), leaves the API's memory bounded: the request is spooled to disk by the
multipart parser, checked and indexed there a piece at a time, and streamed to the blob store.
The API process's peak RSS (VmHWM, reset before the upload) grows by far less than the upload."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
ENTRIES = 300
MAX_GROWTH = 100 * MiB


def noise_png(seed: int) -> bytes:
    """About 1 MiB of PNG that does not compress (random pixels)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def tar_stream(pictures: list[bytes], digest) -> Iterator[bytes]:
    """A tar of ENTRIES pictures in class folders, made as it is sent; `digest` sees every byte."""
    def emit(chunk: bytes) -> bytes:
        digest.update(chunk)
        return chunk

    for number in range(ENTRIES):
        data = pictures[number % len(pictures)]
        info = tarfile.TarInfo(f"class{number % 3}/{number:04d}.png")
        info.size = len(data)
        yield emit(info.tobuf(format=tarfile.USTAR_FORMAT))
        yield emit(data + bytes(-len(data) % tarfile.BLOCKSIZE))
    yield emit(bytes(2 * tarfile.BLOCKSIZE))


def multipart(boundary: str, parts: Iterator[bytes]) -> Iterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.tar\"\r\n"
           "Content-Type: application/x-tar\r\n\r\n").encode()  # fmt: skip
    yield from parts
    yield f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n--{boundary}--\r\n".encode()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def test_a_300_mb_upload_leaves_the_api_memory_bounded(make_stack):
    stack = make_stack(workers=0)
    pid = stack.api.pid
    pictures = [noise_png(seed) for seed in range(4)]
    client = stack.client()
    assert client.get("/v1/datasets").status_code == 200  # warm: routes, Redis pool
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline = status_kib(pid, "VmRSS") * 1024
    digest = hashlib.sha256()
    boundary = uuid.uuid4().hex
    answer = client.post(
        "/v1/datasets",
        content=multipart(boundary, tar_stream(pictures, digest)),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=600,
    )
    assert answer.status_code == 201, answer.text
    growth = status_kib(pid, "VmHWM") * 1024 - baseline
    record = answer.json()
    sent = record["files"][0]["bytes"]
    assert sent > 300 * MiB and record["files"][0]["sha256"] == digest.hexdigest()
    assert record["count"] == ENTRIES and record["label_counts"] == {"class0": 100, "class1": 100, "class2": 100}
    assert growth < MAX_GROWTH, f"the API's peak RSS grew {growth / MiB:.0f} MiB for a {sent / MiB:.0f} MiB upload"
