"""The pieces of bench.storage: a dataset of the size asked for, the API's peak memory during
one transfer, timed transfers with curl (a client that costs the shared cores little), Redis's
`used_memory`, a SeaweedFS S3 server, and the layout of the design before the blob store
(every upload and artifact a Redis string) rebuilt from today's data."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from PIL import Image

from service.keys import Keys
from service.settings import OPEN_MODE_TENANT
from service.storage import BlobStore

MiB = 1024 * 1024
IMAGE_SIDE = 512  # a noise PNG of 512 x 512 RGB, stored without compression: ~768 KiB
CLASSES = 10
COPY_CHUNK = 64 * MiB  # Redis APPENDs of the old layout's dataset string


# ---- the dataset ----------------------------------------------------------------------------


def write_image_tar(path: Path, total_bytes: int, seed: int = 0) -> int:
    """A tar of distinct noise PNGs in the ImageFolder layout (`class-3/00042.png`), at least
    `total_bytes` long; returns the number of images. Noise does not compress, so the archive's
    size is its images' size, and every image passes the upload's header checks."""
    rng = np.random.default_rng(seed)
    count = 0
    with tarfile.open(path, "w") as tar:
        while path.stat().st_size < total_bytes:
            pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG", compress_level=0)
            info = tarfile.TarInfo(f"class-{count % CLASSES}/{count:05d}.png")
            info.size, info.mtime = png.tell(), 0
            png.seek(0)
            tar.addfile(info, png)
            tar.fileobj.flush()
            count += 1
    return count


def file_chunks(path: Path, size: int = 8 * MiB):
    with open(path, "rb") as file:
        while chunk := file.read(size):
            yield chunk


# ---- the API's memory ----------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/{pid}/status")


@dataclass
class Memory:
    before_mib: float = 0.0  # VmRSS when the transfer began
    peak_mib: float = 0.0  # VmHWM at its end, the high-water mark reset at its start
    sampled_mib: float = 0.0  # the largest VmRSS seen by a 20 Hz sampler (a cross-check)


class PeakRss:
    """The peak RSS of process `pid` during a `with` block. Writing 5 to /proc/<pid>/clear_refs
    resets the kernel's high-water mark (VmHWM) to the current RSS, so the peak read at the end
    is the kernel's own, including spikes between samples; a sampler thread reads VmRSS at 20 Hz
    beside it, so that a kernel that refuses the reset still gives a figure."""

    def __init__(self, pid: int):
        self.pid, self.memory, self._stop = pid, Memory(), threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self.reset_worked = True

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.memory.sampled_mib = max(self.memory.sampled_mib, status_kib(self.pid, "VmRSS") / 1024)

    def __enter__(self) -> Memory:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            self.reset_worked = False
        self.memory.before_mib = self.memory.sampled_mib = status_kib(self.pid, "VmRSS") / 1024
        self._sampler.start()
        return self.memory

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()
        self.memory.peak_mib = status_kib(self.pid, "VmHWM") / 1024 if self.reset_worked else self.memory.sampled_mib


# ---- timed transfers -------------------------------------------------------------------------


@dataclass
class Transfer:
    seconds: float
    size: int
    status: int
    memory: Memory
    body: str = ""

    @property
    def mib_per_s(self) -> float:
        return self.size / MiB / self.seconds


def curl(args: list[str], api_pid: int, body_file: Path) -> Transfer:
    """One curl transfer, its time as curl measures it (connect to last byte) and the API's peak."""
    write_out = "%{http_code} %{time_total} %{size_upload} %{size_download}"
    with PeakRss(api_pid) as memory:
        done = subprocess.run(
            ["curl", "-sS", "-o", str(body_file), "-w", write_out, *args], capture_output=True, text=True, check=True
        )
    status, seconds, up, down = done.stdout.split()
    body = body_file.read_text(errors="replace")[:4000] if body_file.stat().st_size < 10 * MiB else ""
    return Transfer(float(seconds), max(int(float(up)), int(float(down))), int(status), memory, body)


def upload_dataset(base: str, api_pid: int, tar: Path, name: str, out: Path) -> Transfer:
    form = ["-F", f"file=@{tar};type=application/x-tar", "-F", f"name={name}"]
    return curl([*form, f"{base}/v1/datasets"], api_pid, out)


def download(url: str, api_pid: int) -> Transfer:
    return curl([url], api_pid, Path("/dev/null"))


def store_alone_put(store: BlobStore, key: str, tar: Path) -> tuple[float, str]:
    """The store's own put of the file, in this process (the reference an upload is compared with)."""
    start = time.perf_counter()
    info = store.put_stream(key, file_chunks(tar))
    return time.perf_counter() - start, info.sha256


def store_alone_read(store: BlobStore, key: str) -> float:
    start = time.perf_counter()
    with store.open_read(key) as reader:
        for _ in reader:
            pass
    return time.perf_counter() - start


# ---- Redis -----------------------------------------------------------------------------------


def used_memory(r: redis.Redis) -> int:
    time.sleep(0.5)  # let the last replies and expired clients settle
    return int(r.info("memory")["used_memory"])


def job_artifacts(r: redis.Redis, keys: Keys, job_id: str) -> tuple[str, list[dict]]:
    prefix, result = r.hmget(keys.job(job_id), "artifacts_prefix", "result")
    return (prefix or b"").decode(), json.loads(result)["artifacts"]


def add_artifact(r: redis.Redis, keys: Keys, job_id: str, name: str, key: str, size: int, sha256: str) -> str:
    """Publish one more artifact, already in the store under the job's prefix, in its record
    (as a worker's finish would have): the one download path the API has for a blob."""
    result = json.loads(r.hget(keys.job(job_id), "result"))
    url = f"/v1/jobs/{job_id}/artifacts/{name}"
    result["artifacts"].append({"name": name, "content_type": "application/x-tar", "bytes": size, "sha256": sha256,
                                "url": url})  # fmt: skip
    r.hset(keys.job(job_id), "result", json.dumps(result))
    r.publish(keys.events(job_id), "{}")  # what every record write does: the API drops its cached copy
    return url


def old_layout_artifacts(r: redis.Redis, keys: Keys, store: BlobStore, job_ids: list[str]) -> list[str]:
    """Every artifact of these jobs also as the string `ns:artifact:{id}:{name}` the design
    before the blob store wrote (with the job's TTL); returns the keys."""
    written = []
    for job_id in job_ids:
        prefix, artifacts = job_artifacts(r, keys, job_id)
        ttl = r.ttl(keys.job(job_id))
        for artifact in artifacts:
            key = keys.artifact(job_id, artifact["name"])
            r.set(key, store.get_bytes(f"{prefix}/{artifact['name']}"), ex=ttl if ttl > 0 else None)
            written.append(key)
    return written


def old_layout_dataset(r: redis.Redis, keys: Keys, dataset_id: str, tar: Path) -> str:
    """The uploaded file as the string `ns:blob:datasets:{tenant}:{id}` of the design before the
    blob store. That design refused uploads over 512 MiB (Redis's own string limit): to hold a
    larger one, Redis's `proto-max-bulk-len` is raised, and the string is written in APPENDs."""
    key = keys.blob("datasets", OPEN_MODE_TENANT, dataset_id)
    r.config_set("proto-max-bulk-len", str(max(512 * MiB, 2 * tar.stat().st_size)))
    r.delete(key)
    for chunk in file_chunks(tar, COPY_CHUNK):
        r.append(key, chunk)
    return key


def to_legacy(r: redis.Redis, keys: Keys, store: BlobStore, job_id: str) -> None:
    """Turn a finished job into one of before the blob store: its artifacts as Redis strings
    and no `artifacts_prefix` in its record, which sends its downloads down the API's legacy
    path (the blobs stay in the store, unreferenced, until their lease ends)."""
    old_layout_artifacts(r, keys, store, [job_id])
    r.hdel(keys.job(job_id), "artifacts_prefix")
    r.publish(keys.events(job_id), "{}")


# ---- SeaweedFS -----------------------------------------------------------------------------


def weed_version() -> str:
    from tests.service.storage.seaweedfs import weed_executable

    done = subprocess.run([weed_executable(), "version"], capture_output=True, text=True)
    return (done.stdout.strip().splitlines() or ["?"])[0]
