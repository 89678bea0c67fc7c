"""Issue 15's figures: the activation index, built through the real service on generated data.

    uv run python -m bench.index [--quick] [--device cpu|cuda] [--threads 1]

Generates its data (seeded shapes drawings, worker/models/shapes.py, as WebDataset tar shards
of `<key>.png` + `<key>.cls`), registers it in place (`POST /v1/datasets` with a `file://`
source under GLASSBOX_DATASET_ROOTS), starts a redis-server, an API and workers
(OMP_NUM_THREADS=--threads each), and measures in one run:

1. images/s of an `activation_index` build of shapes-cnn `features.11` (default k) with 1 and
   with 2 workers, against (a) reading + decoding + preparing the same images alone
   (worker/scan_reader.prepared_batches, in this process) and (b) the truncated forward alone
   over pre-decoded tensors (worker/core/probe.capture_activations, same batch size, this
   process with --threads torch threads);
2. the peak RSS (VmHWM) of a fresh worker process after a scan of the small and of the big set;
3. a deconvnet job on 8 channels of `features.11` (top_k 9) before the layer is indexed (the
   job builds the index itself) and after (the same job again reads it), on both sets;
4. images/s of an index build of a torchvision architecture with random weights at 224 px
   (resnet50 `layer4` on cuda; resnet18 on a CPU, fewer images) and the time it projects for
   1.28 M images against the Deep Visualization Toolbox's 40 hours.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import publish, results_dir
from bench.__main__ import git_commit
from bench.processes import Processes, start_service

MODEL, LAYER, BATCH = "shapes-cnn", "features.11", 64  # BATCH: activation_index's default batch_size
DVT_HOURS, IMAGENET_TRAIN = 40.0, 1_281_167


@dataclass(frozen=True)
class Config:
    big: int
    small: int
    per_tar: int
    decode_images: int  # images read for (a): a slice of the big set
    forward_images: int  # pre-decoded images for (b), kept in memory
    torchvision_images: int
    shard_images: int | None = None  # None: activation_index's default (2,048)


FULL = Config(
    big=100_000, small=1_000, per_tar=10_000, decode_images=10_000, forward_images=4096, torchvision_images=320
)
QUICK = Config(
    big=2_000,
    small=200,
    per_tar=1_000,
    decode_images=1_000,
    forward_images=512,
    torchvision_images=32,
    shard_images=256,
)
GPU_TORCHVISION_IMAGES = 2_000


# ---- data ------------------------------------------------------------------------------------


def write_shards(folder: Path, count: int, seed: int, per_tar: int, size: int = 64) -> float:
    """`count` drawings as tar shards of `per_tar` (PNG + class label per key); seconds taken."""
    from PIL import Image

    from worker.models.shapes import generate_shapes

    started = time.perf_counter()
    folder.mkdir(parents=True)
    for shard, first in enumerate(range(0, count, per_tar)):
        pictures, labels = generate_shapes(min(per_tar, count - first), seed=seed * 1000 + shard, size=size)
        with tarfile.open(folder / f"shard-{shard:05d}.tar", "w") as archive:
            for offset, (picture, label) in enumerate(zip(pictures, labels)):
                png = io.BytesIO()
                Image.fromarray(picture).save(png, format="PNG", compress_level=1)
                key = f"{first + offset:07d}"
                for name, data in ((f"{key}.png", png.getvalue()), (f"{key}.cls", str(int(label)).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return time.perf_counter() - started


# ---- the service -----------------------------------------------------------------------------


class Service:
    def __init__(self, procs: Processes, base: str):
        self.procs = procs
        self.client = httpx.Client(base_url=base, timeout=120)
        self.redis = redis.Redis.from_url(procs.service_env["GLASSBOX_REDIS_URL"])
        self.workers: list[subprocess.Popen] = [p for name, p in procs.procs if name == "worker"]
        self.started = 1

    def start_worker(self) -> subprocess.Popen:
        self.started += 1
        proc = self.procs.start(
            f"worker{self.started}", [sys.executable, "-m", "service.cli", "worker"], self.procs.service_env
        )
        deadline = time.monotonic() + 180
        while not any(f".{proc.pid}." in name.decode() for name in self.redis.zrange("glassbox:workers", 0, -1)):
            self.procs.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {proc.pid} did not register")
            time.sleep(0.1)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            proc.wait(timeout=60)
            self.procs.procs = [(n, p) for n, p in self.procs.procs if p is not proc]
        self.workers = []

    def run(self, body: dict[str, Any], timeout: float = 3600) -> tuple[dict[str, Any], float]:
        """The job once it succeeded, and the seconds from POST to a poll that saw it end."""
        started = time.perf_counter()
        created = self.client.post("/v1/jobs", json=body)
        if created.status_code != 202:
            raise RuntimeError(f"{body['kind']}: {created.status_code} {created.text}")
        key, pause = f"glassbox:job:{created.json()['id']}", 0.002
        while self.redis.hget(key, "status") not in (b"succeeded", b"failed", b"canceled"):
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{body['kind']} did not finish within {timeout} s")
            self.procs.check_alive()
            time.sleep(pause)
            pause = min(0.1, pause * 1.3)  # fine for short jobs, light on long ones
        seconds = time.perf_counter() - started
        job = self.client.get(f"/v1/jobs/{created.json()['id']}").json()
        if job["status"] != "succeeded":
            raise RuntimeError(f"{body['kind']} {job['status']}: {job.get('error')}")
        return job, seconds

    def result(self, job: dict[str, Any]) -> dict[str, Any]:
        url = next(a["url"] for a in job["result"]["artifacts"] if a["name"] == "result.json")
        return self.client.get(url).json()

    def register(self, name: str, folder: Path) -> float:
        started = time.perf_counter()
        answer = self.client.post("/v1/datasets", json={"name": name, "source": f"file://{folder}"})
        if answer.status_code != 202:
            raise RuntimeError(f"registering {name}: {answer.status_code} {answer.text}")
        while (record := self.client.get(f"/v1/datasets/{name}").json())["status"] != "ready":
            if record["status"] == "failed":
                raise RuntimeError(f"indexing {name} failed: {record.get('error')}")
            self.procs.check_alive()
            time.sleep(0.2)
        return time.perf_counter() - started

    def build(
        self, dataset: str, model: str = MODEL, layer: str = LAYER, **params: Any
    ) -> tuple[dict[str, Any], float]:
        body = {"kind": "activation_index", "model": model, "params": {"dataset": dataset, "layers": [layer], **params}}
        return self.run(body)

    def drop_index(self, dataset: str, layer: str = LAYER) -> None:
        for record in self.client.get("/v1/indexes").json():
            if record["dataset"] == dataset and record["layer"] == layer:
                self.client.delete(f"/v1/indexes/{record['id']}").raise_for_status()


def peak_rss_mib(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


# ---- the two stages alone, in this process ---------------------------------------------------


def stages_alone(env: dict[str, str], dataset: str, cfg: Config) -> dict[str, float]:
    """(a) read + decode + prepare through the workers' reader, (b) the truncated forward over
    tensors already prepared; images/s each."""
    import torch

    from service.catalogs import DatasetCatalog
    from service.jobstore import JobStore
    from service.settings import OPEN_MODE_TENANT, Settings
    from service.storage import open_blob_store
    from service.uploaded_files import UploadedFiles
    from worker.core.probe import capture_activations
    from worker.datasets import DatasetLoader
    from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn
    from worker.scan_reader import prepared_batches

    settings = Settings(redis_url=env["GLASSBOX_REDIS_URL"], data_dir=env["GLASSBOX_DATA_DIR"],
                        dataset_roots=env["GLASSBOX_DATASET_ROOTS"])  # fmt: skip
    connection = redis.Redis.from_url(settings.redis_url)
    files = open_blob_store(settings)
    uploaded = UploadedFiles(connection, JobStore(connection, settings).keys, files)
    images = DatasetLoader(DatasetCatalog(connection, settings), uploaded, settings.dataset_roots).images(
        OPEN_MODE_TENANT, dataset
    )

    kept, decode = [], math.inf
    for _ in range(2):  # best of 2: a shared machine
        started = time.perf_counter()
        for batch, _, _ in prepared_batches(images, 0, cfg.decode_images, BATCH, SHAPES_INPUT):
            if len(kept) * BATCH < cfg.forward_images:
                kept.append(batch)
        decode = min(decode, time.perf_counter() - started)

    model = load_shapes_cnn()
    best = math.inf
    with torch.no_grad():
        for _ in range(6):  # the first warms up; then best of 5
            started = time.perf_counter()
            for batch in kept:
                capture_activations(model, batch, [LAYER])
            best = min(best, time.perf_counter() - started)
    return {"decode": cfg.decode_images / decode, "forward": sum(len(b) for b in kept) / best}


# ---- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 200 images (a smoke test)")
    parser.add_argument("--device", default="cpu", help="the workers' device (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each worker and torch threads here")
    args = parser.parse_args()
    import torch

    cfg = QUICK if args.quick else FULL
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="glassbox-bench-index-"))
    data = work / "datasets"
    figures: dict[str, Any] = {"threads": args.threads, "device": "cuda" if cuda else "cpu"}
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    big, small = f"shapes-{cfg.big}", f"shapes-{cfg.small}"
    figures["generate_big"] = write_shards(data / big, cfg.big, seed=1, per_tar=cfg.per_tar)
    write_shards(data / small, cfg.small, seed=2, per_tar=cfg.per_tar)
    say(f"generated {cfg.big} images in {figures['generate_big']:.0f} s")
    (work / "logs").mkdir()
    procs = Processes(work / "logs")
    env = {"GLASSBOX_DATASET_ROOTS": str(data), "OMP_NUM_THREADS": str(args.threads)}
    try:
        service = Service(procs, start_service(procs, "cuda" if cuda else "cpu", env=env))
        figures["register_big"] = service.register(big, data / big)
        service.register(small, data / small)
        say(f"registered in {figures['register_big']:.0f} s")
        figures.update(stages_alone(procs.service_env, big, cfg))
        say(f"decode alone {figures['decode']:.0f}/s, forward alone {figures['forward']:.0f}/s")

        shards = {"shard_images": cfg.shard_images} if cfg.shard_images else {}
        # Peak RSS: a fresh worker for each scan, so that its high-water mark is that scan's.
        for name, count in ((small, cfg.small), (big, cfg.big)):
            service.stop_workers()
            worker = service.start_worker()
            idle = peak_rss_mib(worker.pid)[0]
            job, seconds = service.build(name, rebuild=True, **shards)
            figures[f"rss_{count}"] = (idle, *peak_rss_mib(worker.pid))
            say(
                f"{count} images on a fresh worker: {seconds:.1f} s, VmHWM {idle:.0f} -> {figures[f'rss_{count}'][1]:.0f} MiB"
            )
        figures["one_worker"] = (seconds, service.result(job)["shards"])
        live = [c for c in range(64) if c not in service.result(job)["indexes"][0]["dead_channels"]]
        channels = live[:: max(1, len(live) // 8)][:8]

        service.start_worker()
        job, seconds = service.build(big, rebuild=True, **shards)
        figures["two_workers"] = (seconds, service.result(job)["shards"])
        say(f"2 workers: {seconds:.1f} s")

        figures["channels"] = channels
        deconvnet = {"layer": LAYER, "channels": channels, "top_k": 9}
        for name, count in ((big, cfg.big), (small, cfg.small)):
            service.drop_index(name)
            body = {"kind": "deconvnet", "model": MODEL, "params": {**deconvnet, "dataset": name}}
            job, before = service.run(body)
            assert job["result"]["summary"]["index_built"], job["result"]["summary"]
            runs = [service.run(body) for _ in range(3)]
            assert not any(again["result"]["summary"]["index_built"] for again, _ in runs)
            after = min(seconds for _, seconds in runs)
            figures[f"deconvnet_{count}"] = (before, after)
            say(f"deconvnet over {count}: {before:.1f} s before indexing, {after:.2f} s after")

        figures["torchvision"] = torchvision_scan(service, data, cuda, cfg)
    finally:
        procs.stop_all()
    publish(render(figures, cfg, args), results_dir() / "index.md")
    return 0


def torchvision_scan(service: Service, data: Path, cuda: bool, cfg: Config) -> dict[str, Any]:
    architecture = "resnet50" if cuda else "resnet18"
    count = GPU_TORCHVISION_IMAGES if cuda and cfg is FULL else cfg.torchvision_images * (4 if cuda else 1)
    name = f"shapes224-{count}"
    generated = write_shards(data / name, count, seed=3, per_tar=500, size=224)
    service.register(name, data / name)
    model = f"torchvision/{architecture}?weights=random&seed=0"
    service.run({"kind": "model_inspection", "model": model})  # its layers; loaded on one worker
    shards = 2 * len(service.workers)  # every worker gets some
    job, seconds = service.build(name, model=model, layer="layer4", shard_images=max(16, math.ceil(count / shards)))
    return {"architecture": architecture, "images": count, "seconds": seconds, "generated": generated,
            "workers": len(service.workers), "shards": service.result(job)["shards"]}  # fmt: skip


def render(f: dict[str, Any], cfg: Config, args: argparse.Namespace) -> str:
    import torch

    one_s, one_shards = f["one_worker"]
    two_s, two_shards = f["two_workers"]
    one, two = cfg.big / one_s, cfg.big / two_s
    slower = min(f["decode"], f["forward"])
    slower_name = "decode" if f["decode"] < f["forward"] else "forward"
    command = "uv run python -m bench.index" + (" --quick" if args.quick else "") + f" --device {args.device}"
    if args.threads != 1:
        command += f" --threads {args.threads}"
    machine = torch.cuda.get_device_name() if f["device"] == "cuda" else f"{os.cpu_count()} CPUs"
    lines = [
        "# The activation index (issue 15)",
        "",
        f"Command: `{command}`. {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; {machine}, "
        f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} at the end (a shared machine).",
        "",
        f"Data: {cfg.big:,} and {cfg.small:,} seeded shapes drawings (64 x 64, worker/models/shapes.py), PNG, in "
        f"WebDataset tar shards of {cfg.per_tar:,}, registered in place (`file://`); generating the {cfg.big:,} took "
        f"{f['generate_big']:.0f} s and registering them (the dataset_indexing job) {f['register_big']:.0f} s. "
        f"One redis-server, one API and the workers on this machine; every worker with OMP_NUM_THREADS={f['threads']}, "
        f"and {f['threads']} torch thread(s) for the stages measured alone in the benchmark's process. "
        f"shapes-cnn `{LAYER}` (64 channels, 16 x 16), default k (64), batches of {BATCH}, shards of {cfg.shard_images or 2048:,} images.",
        "",
        "## Build speed against its stages alone",
        "",
        "| what | images/s | vs the slower stage alone |",
        "|---|---:|---:|",
        f"| (a) read + decode + prepare alone (worker/scan_reader.py, its 2 threads; {cfg.decode_images:,} images, best of 2) "
        f"| {f['decode']:.0f} | |",
        f"| (b) truncated forward alone to `{LAYER}` over pre-decoded tensors ({cfg.forward_images:,} images, best of 5) "
        f"| {f['forward']:.0f} | |",
        f"| index build of {cfg.big:,} images, 1 worker ({one_shards} shards; POST to succeeded: {one_s:.1f} s) "
        f"| {one:.0f} | **{one / slower:.2f}x** of {slower_name} (goal >= 0.7x) |",
        f"| the same, 2 workers ({two_shards} shards; {two_s:.1f} s) | {two:.0f} | {two / slower:.2f}x; "
        f"2-worker efficiency {two / (2 * one):.0%} |",
        "",
        "The 1-worker build ran on a fresh worker (its first shard also loads the model and the dataset's index); "
        "in the 2-worker build the second worker is fresh. Efficiency = rate(2) / (2 x rate(1)).",
        "",
        "## Peak worker RSS (VmHWM of a fresh worker process, read after the build)",
        "",
        "| images scanned | VmHWM before the job | VmHWM after | VmRSS after |",
        "|---:|---:|---:|---:|",
    ]
    for count in (cfg.small, cfg.big):
        idle, peak, rss = f[f"rss_{count}"]
        lines.append(f"| {count:,} | {idle:.0f} MiB | {peak:.0f} MiB | {rss:.0f} MiB |")
    grew = f[f"rss_{cfg.big}"][1] - f[f"rss_{cfg.small}"][1]
    lines += [
        "",
        f"Difference in peak: {grew:+.0f} MiB for {cfg.big // cfg.small}x the images (goal: within tens of MB).",
        "",
        f"## Deconvnet on 8 channels of `{LAYER}` (channels {f['channels']}, top_k 9), POST to succeeded",
        "",
        "| dataset | before indexing (the job builds the index) | after (reads it; best of 3) | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for count in (cfg.big, cfg.small):
        before, after = f[f"deconvnet_{count}"]
        lines.append(f"| {count:,} images | {before:.2f} s | {after:.2f} s | **{before / after:.0f}x** |")
    tv = f["torchvision"]
    rate = tv["images"] / tv["seconds"]
    hours = IMAGENET_TRAIN / rate / 3600
    where = "GPU" if f["device"] == "cuda" else f"**CPU** ({os.cpu_count()} cores; a GPU run: `--device cuda`)"
    lines += [
        "",
        "Goal: >= 20x faster after indexing, and the time after independent of the dataset size.",
        "",
        f"## torchvision/{tv['architecture']} (random weights, seed 0), `layer4` at 224 px, on the {where}",
        "",
        "| images | workers | shards | build, POST to succeeded | images/s | 1.28 M images (ImageNet train) | vs DVT's 40 h |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {tv['images']:,} (224 x 224 drawings, PNG; generated in {tv['generated']:.0f} s) | {tv['workers']} | {tv['shards']} "
        f"| {tv['seconds']:.1f} s | {rate:.1f} | {hours:.1f} h (projected) | {DVT_HOURS / hours:.2f}x |",
    ]
    if f["device"] != "cuda":
        lines += [
            "",
            "A CPU figure for a smaller network (resnet18, not resnet50): the GPU row comes from `--device cuda`.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
