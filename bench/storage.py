"""Benchmark of the blob store (issue 14): what Redis holds, 1 GiB through the API, and
artifact downloads against the old Redis path.

    uv run python -m bench.storage [--quick]

For each backend, `file` (a folder) and `s3` (a SeaweedFS server started here, the one the
tests use: tests/service/storage/seaweedfs.py), it starts a redis-server, `glassbox api` and
one worker (bench/storage_plugin.py's `bench-artifacts` kind: a job that only writes artifacts
of the size asked for), then:

1. Redis `used_memory`: after start; after a dataset upload (a tar of noise PNGs, 1 GiB) and
   100 jobs with artifacts (1 MiB each); then "before", the design where every upload and
   artifact was a Redis string, rebuilt in the same Redis (`file` run only): the same bytes
   written as the strings that design wrote (`ns:artifact:{id}:{name}`, `ns:blob:datasets:...`),
   read from today's store, beside today's records. Those strings are then deleted.
2. Throughput of the dataset upload (`POST /v1/datasets`, curl, end to end: transfer, spool,
   checks and index, the put into the store, the record) and of the download of the same bytes
   (the API has one download path for a stored file: `GET /v1/jobs/{id}/artifacts/{name}`; the
   tar is put in the store as an artifact of a finished job), each with the API's peak RSS
   (VmHWM, reset before each transfer through /proc/<pid>/clear_refs); and, for reference, the
   store's own put and read of the same file in this process.
3. Artifact download latency (64 KiB, as bench.scaling) at 1 / 8 / 64 keep-alive clients:
   jobs whose artifacts are in the store against jobs turned into jobs of before the blob store
   (artifacts as Redis strings, no `artifacts_prefix`), which the API serves through its legacy
   path: one GET of the whole string, the code the old design used for every artifact.

Writes bench/results/storage.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench import results_dir
from bench.__main__ import git_commit
from bench.bare_app import ARTIFACT_BYTES
from bench.httpload import LoadResult, percentile, raw_request, run_load
from bench.jobclient import submit_jobs, wait_all_terminal
from bench.processes import Processes, start_service
from bench.storage_parts import (
    MiB,
    Transfer,
    add_artifact,
    download,
    job_artifacts,
    old_layout_artifacts,
    old_layout_dataset,
    store_alone_put,
    store_alone_read,
    to_legacy,
    upload_dataset,
    used_memory,
    weed_version,
    write_image_tar,
)
from bench.storage_plugin import KIND, MODEL
from service.keys import Keys
from service.settings import Settings
from service.storage import open_blob_store

RESULTS = results_dir() / "storage.md"
NAMESPACE = "glassbox"
BUCKET = "glassbox-bench"
ROUNDS = 8  # per latency level and path


@dataclass
class Config:
    dataset_mib: int = 1024
    jobs: int = 100
    artifact_files: int = 4  # per job, beside its result.json
    artifact_bytes: int = 256 * 1024  # each
    latency_jobs: int = 100  # per path (store, Redis)
    levels: tuple[int, ...] = (1, 8, 64)
    seconds: float = 8.0  # per latency level and path


@dataclass
class Figures:
    backend: str
    memory: dict[str, int] = field(default_factory=dict)
    upload: Transfer | None = None
    download: Transfer | None = None
    alone_put_s: float = 0.0
    alone_read_s: float = 0.0
    latency: list[tuple[int, LoadResult, LoadResult]] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-min load average at the start of each phase


def phase(figures: Figures, what: str) -> None:
    figures.load.append(os.getloadavg()[0])
    print(f"  {time.strftime('%H:%M:%S')} {figures.backend}: {what} (load {figures.load[-1]:.1f})", file=sys.stderr,
          flush=True)  # fmt: skip


def string_bytes(r: redis.Redis, keys: list[str]) -> int:
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.strlen(key)
    return sum(pipe.execute())


def artifacts_job(files: int, file_bytes: int) -> dict:
    return {"kind": KIND, "model": MODEL, "params": {"files": files, "file_bytes": file_bytes}}


def finished_jobs(base: str, r: redis.Redis, body: dict, n: int) -> list[str]:
    ids = submit_jobs(base, body, n)
    rows = wait_all_terminal(r, ids, timeout=600)
    failed = sum(row[0] != b"succeeded" for row in rows)
    if failed:
        raise RuntimeError(f"{failed} of {n} jobs did not succeed")
    return ids


def backend_settings(backend: str, folder: Path, endpoint: str) -> dict[str, str]:
    if backend == "file":
        return {"GLASSBOX_BLOB_URL": (folder / "blobs").as_uri()}
    from tests.service.storage.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY

    credentials = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}
    os.environ.update(credentials)  # this process's store reads them too, as obstore does
    return {**credentials, "GLASSBOX_BLOB_URL": f"s3://{BUCKET}/bench", "GLASSBOX_S3_ENDPOINT_URL": endpoint,
            "GLASSBOX_S3_ALLOW_HTTP": "true"}  # fmt: skip


def run_backend(backend: str, cfg: Config, tar: Path, images: int, folder: Path, endpoint: str = "") -> Figures:
    folder.mkdir(parents=True)
    (folder / "tmp").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")},
        **backend_settings(backend, folder, endpoint),
        "GLASSBOX_NAMESPACE": NAMESPACE,
        "GLASSBOX_PLUGINS": "bench.storage_plugin",
        "GLASSBOX_MAX_CONCURRENT_JOBS_PER_TENANT": "16",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(folder / "tmp"),  # the API spools uploads here
    }
    figures, procs = Figures(backend), Processes(folder)
    try:
        phase(figures, "starting redis-server, the API and a worker")
        base = start_service(procs, "cpu", env=env)
        api_pid = next(p.pid for name, p in procs.procs if name == "api")
        r = redis.Redis.from_url(procs.service_env["GLASSBOX_REDIS_URL"])
        keys = Keys(NAMESPACE)
        store = open_blob_store(Settings(blob_url=env["GLASSBOX_BLOB_URL"], s3_allow_http=True,
                                         s3_endpoint_url=env.get("GLASSBOX_S3_ENDPOINT_URL", "")))  # fmt: skip
        figures.memory["start"] = used_memory(r)

        phase(figures, f"upload of {tar.stat().st_size / MiB:.0f} MiB")
        figures.upload = upload_dataset(base, api_pid, tar, "bench-dataset", folder / "upload-answer.json")
        if figures.upload.status != 201 or f'"count":{images}' not in figures.upload.body.replace(" ", ""):
            raise RuntimeError(f"upload answered {figures.upload.status}: {figures.upload.body[:2000]}")
        phase(figures, f"{cfg.jobs} jobs with {cfg.artifact_files} x {cfg.artifact_bytes} B artifacts")
        ids = finished_jobs(base, r, artifacts_job(cfg.artifact_files, cfg.artifact_bytes), cfg.jobs)
        figures.memory["today"] = used_memory(r)
        if backend == "file":
            written = old_layout_artifacts(r, keys, store, ids)
            figures.memory["old artifacts"] = used_memory(r)
            figures.memory["old artifacts bytes"] = string_bytes(r, written)
            written.append(old_layout_dataset(r, keys, "bench-dataset", tar))
            figures.memory["before"] = used_memory(r)
            figures.memory["dataset bytes"] = string_bytes(r, written[-1:])
            r.delete(*written)
            r.config_set("proto-max-bulk-len", str(512 * MiB))

        phase(figures, "download and the store alone")
        key = f"{job_artifacts(r, keys, ids[0])[0]}/dataset.tar"
        figures.alone_put_s, sha256 = store_alone_put(store, key, tar)
        figures.alone_read_s = store_alone_read(store, key)
        url = add_artifact(r, keys, ids[0], "dataset.tar", key, tar.stat().st_size, sha256)
        figures.download = download(base + url, api_pid)
        if figures.download.status != 200 or figures.download.size != tar.stat().st_size:
            raise RuntimeError(f"download: {figures.download.status}, {figures.download.size} bytes")

        phase(figures, "artifact latency, store vs Redis")
        figures.latency = latency(base, r, keys, store, cfg)
        phase(figures, "done")
        procs.check_alive()
        return figures
    finally:
        procs.stop_all()


def latency(base: str, r: redis.Redis, keys: Keys, store, cfg: Config) -> list[tuple[int, LoadResult, LoadResult]]:
    ids = finished_jobs(base, r, artifacts_job(1, ARTIFACT_BYTES), 2 * cfg.latency_jobs)
    in_store, in_redis = ids[: cfg.latency_jobs], ids[cfg.latency_jobs :]
    for job_id in in_redis:
        to_legacy(r, keys, store, job_id)
    port = int(base.rsplit(":", 1)[1])
    with httpx.Client(base_url=base) as client:  # both paths give the same bytes
        for job_id in (in_store[0], in_redis[0]):
            got = client.get(f"/v1/jobs/{job_id}/artifacts/payload-0.bin")
            sha = next(a["sha256"] for a in job_artifacts(r, keys, job_id)[1] if a["name"] == "payload-0.bin")
            if got.status_code != 200 or hashlib.sha256(got.content).hexdigest() != sha:
                raise RuntimeError(f"artifact of {job_id}: {got.status_code}")
    requests = [[raw_request("GET", f"/v1/jobs/{i}/artifacts/payload-0.bin", port) for i in group]
                for group in (in_store, in_redis)]  # fmt: skip
    rows = []
    for clients in cfg.levels:
        pooled = (LoadResult(), LoadResult())
        # Rounds in alternating order (store, Redis; Redis, store; ...): a machine shared with other
        # work changes its load during a level, and alternation gives both paths the same share.
        for round_ in range(ROUNDS):
            for path in (0, 1) if round_ % 2 == 0 else (1, 0):
                load = run_load(port, requests[path], clients, cfg.seconds / ROUNDS)
                pooled[path].latencies += load.latencies
                pooled[path].elapsed += load.elapsed
                pooled[path].errors += load.errors
        rows.append((clients, *pooled))
    return rows


# ---- the report ---------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def render(command: str, cfg: Config, runs: list[Figures], tar_bytes: int, images: int, load: dict) -> str:
    file_run = runs[0]
    m = file_run.memory
    size = f"{tar_bytes / MiB:,.0f} MiB"
    lines = [
        "# The blob store: Redis memory, dataset transfers, artifact downloads (issue 14)",
        "",
        f"Command: `{command}`. {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; "
        f"{os.cpu_count()} CPUs ({platform.machine()}), shared with other work: load average "
        f"{load['start']:.1f} at the start, {load['end']:.1f} at the end; redis-server {load['redis']}; "
        f"SeaweedFS {load['weed']}. One redis-server, one API and one worker per backend, and curl as the client, "
        "all on this machine (the s3 store too: its network is the loopback). 1-minute load average at the start "
        "of each phase (start, upload, jobs, download, latency, end): "
        + "; ".join(f"{f.backend} " + ", ".join(f"{x:.1f}" for x in f.load) for f in runs)
        + ".",
        "",
        f"Dataset: one tar of {images:,} noise PNGs (512 x 512, uncompressed), {size} ({tar_bytes:,} bytes), "
        f"ImageFolder layout. Jobs: `bench-artifacts` (bench/storage_plugin.py: it only writes its artifacts), "
        f"each with {cfg.artifact_files} artifacts of {cfg.artifact_bytes:,} bytes and a small `result.json` "
        f"({cfg.artifact_files * cfg.artifact_bytes / MiB:g} MiB per job).",
        "",
        f"## Redis `used_memory` after the dataset upload and {cfg.jobs} jobs with artifacts",
        "",
        "| state | used_memory | vs today |",
        "|---|---:|---:|",
        f"| after start (built-in records, the worker) | {mib(m['start'])} | |",
        f"| **today** (blob store: Redis keeps the records), `file` backend | **{mib(m['today'])}** | 1x |",
    ]
    lines += [f"| today, `{f.backend}` backend | {mib(f.memory['today'])} | |" for f in runs[1:]]
    lines += [
        f"| old design, artifacts only: + the {cfg.jobs} jobs' artifacts as Redis strings "
        f"({mib(m['old artifacts bytes'])} in strings) | {mib(m['old artifacts'])} | "
        f"{m['old artifacts'] / m['today']:.1f}x |",
        f"| **before** (old design): + the dataset as a Redis string ({mib(m['dataset bytes'])}) | "
        f"**{mib(m['before'])}** | **{m['before'] / m['today']:.1f}x** |",
        "",
        'How "before" is reproduced: the old code is not run. In the same Redis, after the `file` run\'s upload and '
        "jobs, the bench writes the strings the old design kept, with today's bytes read back from the store: "
        "each artifact as `ns:artifact:{job}:{name}` (with the job's TTL) and the uploaded tar as "
        "`ns:blob:datasets:local:bench-dataset`, the key layout that service/blobs.py still migrates and that "
        "the API still serves (service/jobstore/reader.py `legacy_artifact`). The records are today's, for both "
        "rows (the old ones differed by a few fields: no `artifacts_prefix`, a dataset's image names in its record "
        "instead of an index in the store); the difference between the rows is the bytes. The old API took a "
        "dataset of at most 512 MiB (its GLASSBOX_MAX_UPLOAD_BYTES, and Redis's default `proto-max-bulk-len`), "
        "held it whole in its own memory and SET it in one command (which this does not reproduce: the string is "
        "written in 64 MiB APPENDs"
        + (", with `proto-max-bulk-len` raised to hold it" if tar_bytes > 512 * MiB else "")
        + "). used_memory is what Redis's allocator holds: a large string takes its jemalloc size class "
        "(classes are 1/4 of a power of two apart), so it may exceed the string's length.",
        "",
        f"## The {size} dataset through the API",
        "",
        "Upload: `curl -F file=@dataset.tar` to `POST /v1/datasets`, until its 201 (transfer, spooled to the API's "
        "temporary folder, checks and index, streamed into the store, index written, record published). Download: "
        "`curl -o /dev/null` of the same bytes as an artifact of a finished job (`GET "
        "/v1/jobs/{id}/artifacts/dataset.tar`, streamed from the store: the API's one download path for a "
        'stored file; no dataset download endpoint exists). "Store alone": the same put or streamed read done '
        "by the store's Python interface in the bench process, no HTTP. API RSS: VmRSS when the transfer began, "
        "and VmHWM at its end with the high-water mark reset at its start (`/proc/<pid>/clear_refs`), with the "
        "largest VmRSS a 20 Hz sampler saw as a cross-check.",
        "",
        "| backend | transfer | seconds | MiB/s | store alone MiB/s | vs store alone | API RSS at start | "
        "**API peak RSS** | sampled max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in runs:
        for name, t, alone in (("upload", f.upload, f.alone_put_s), ("download", f.download, f.alone_read_s)):
            alone_rate = tar_bytes / MiB / alone
            lines.append(
                f"| {f.backend} | {name} | {t.seconds:.1f} | {t.mib_per_s:.0f} | {alone_rate:.0f} | "
                f"{t.mib_per_s / alone_rate:.2f}x | {t.memory.before_mib:.0f} MiB | **{t.memory.peak_mib:.0f} MiB** "
                f"| {t.memory.sampled_mib:.0f} MiB |"
            )
    lines += [
        "",
        f"## Artifact download latency: the blob store vs the old Redis path ({ARTIFACT_BYTES // 1024} KiB)",
        "",
        f"{cfg.latency_jobs} finished jobs whose `payload-0.bin` is in the store, and {cfg.latency_jobs} turned into "
        "jobs of before the blob store (the artifact as a Redis string, no `artifacts_prefix` in the record: the "
        "API's legacy path, `GET` of the whole string, as the old design served every artifact). Same API "
        f"process, same record cache, same size; each level {cfg.seconds:g} s of each path, in {ROUNDS} rounds "
        "of alternating order (store then Redis, Redis then store, ...), pooled; keep-alive clients "
        "(bench/httpload.py). Latencies in ms. With the load averages above (2 cores), every latency here is "
        "that of an oversubscribed machine: the ratios, measured in alternation, are the figures to read.",
        "",
        "| backend | clients | store median | store p99 | store req/s | Redis median | Redis p99 | Redis req/s | "
        "median vs Redis | req/s vs Redis | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in runs:
        for clients, ours, old in f.latency:
            lines.append(
                f"| {f.backend} | {clients} | {ms(statistics.median(ours.latencies))} | "
                f"{ms(percentile(ours.latencies, 99))} | {ours.rps:.0f} | {ms(statistics.median(old.latencies))} | "
                f"{ms(percentile(old.latencies, 99))} | {old.rps:.0f} | "
                f"{statistics.median(ours.latencies) / statistics.median(old.latencies):.2f}x | "
                f"{ours.rps / old.rps:.2f}x | {ours.errors + old.errors} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 64 MiB dataset, 10 jobs, 2-s loads")
    parser.add_argument("--backends", default="file,s3", help="comma-separated: file, s3 (file first: 'before')")
    args = parser.parse_args(argv)
    cfg = Config(dataset_mib=64, jobs=10, latency_jobs=20, seconds=2.0) if args.quick else Config()
    backends = args.backends.split(",")
    if backends[0] != "file" or not set(backends) <= {"file", "s3"}:
        parser.error("--backends: file first, then optionally s3")
    command = shlex.join(["uv", "run", "python", "-m", "bench.storage", *(argv if argv is not None else sys.argv[1:])])
    load = {"start": os.getloadavg()[0], "weed": weed_version() if "s3" in backends else "(not run)",
            "redis": redis_version()}  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="glassbox-bench-storage-"))
    seaweed = None
    try:
        tar = folder / "dataset.tar"
        started = time.monotonic()
        images = write_image_tar(tar, cfg.dataset_mib * MiB)
        print(f"dataset: {images} images, {tar.stat().st_size / MiB:.0f} MiB in {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
        runs = [run_backend("file", cfg, tar, images, folder / "file")]
        if "s3" in backends:
            from tests.service.storage.seaweedfs import SeaweedS3

            seaweed = SeaweedS3(folder / "seaweedfs")
            (folder / "seaweedfs").mkdir()
            seaweed.start()
            seaweed.create_bucket(BUCKET)
            runs.append(run_backend("s3", cfg, tar, images, folder / "s3", seaweed.endpoint))
        load["end"] = os.getloadavg()[0]
        report = render(command, cfg, runs, tar.stat().st_size, images, load)
        print(report)
        RESULTS.write_text(report)
        return 0
    finally:
        if seaweed is not None:
            seaweed.stop()
        shutil.rmtree(folder, ignore_errors=True)


def redis_version() -> str:
    import subprocess

    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("v=")), "?")


if __name__ == "__main__":
    sys.exit(main())
