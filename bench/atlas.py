"""Issue 16's figures: a layer atlas as one job against the same work as separate jobs.

    uv run python -m bench.atlas [--quick] [--device cpu|cuda] [--threads 1]

For each workload (a model, a layer, its units, generated images) it starts from a service with
one worker (OMP_NUM_THREADS=--threads) and times, POST to succeeded:

1. the baseline, on one worker: an `activation_index` job on the layer, then `deconvnet` jobs
   over all the units (at most 64 channels a job: several jobs) reading that index, then
   `activation_maximization` jobs rendering every unit (at most 64 units a job) with the
   atlas's feature-visualization params; their sum is the figure to beat;
2. the atlas of the same units on that one worker, its layer's index dropped first, so the atlas
   builds it (the index is included, as in the sum) and a fresh seed, so no chunk is reused;
3. after a second worker joined: the same atlas again (index dropped again, another seed).

Goals (issue 16): the 1-worker atlas at most 1.1x the sum; the 2-worker atlas at least 0.8
efficiency (t1 / (2 t2)) while there are cores. Datasets are seeded shapes drawings
(worker/models/shapes.py) registered in place, as bench/index.py does. On a CPU the second
workload is torchvision resnet18 (random weights) uploaded with a 112 px input contract, `layer3`
over 1,000 images with a lighter rendering; with `--device cuda` it is torchvision resnet50
`layer4` (2048 units, 224 px) over 10,000 images with the atlas's default rendering.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import publish, results_dir
from bench.__main__ import git_commit
from bench.index import Service, write_shards
from bench.jobclient import wait_all_terminal
from bench.processes import Processes, start_service

PER_JOB = 64  # deconvnet's MAX_CHANNELS and activation maximization's MAX_UNITS
BATCH = 64  # images (index) and neurons (projections) per pass, in the atlas and in the baseline
# A worker's heartbeat thread has gone silent for over the default 20 s during a resnet18 chunk on
# this loaded CPU: the reaper then requeued the running chunk and the atlas's assembly never ran.
# The benchmark measures throughput, so it gives workers longer before they count as lost.
WORKER_LOST_AFTER_S = 300


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    layer: str
    layer_units: int  # the layer's channels
    units: int  # how many of them (the first `units`); all of them unless a quick run says fewer
    images: int
    image_size: int
    per_tar: int
    shards: int  # index shards, in the atlas and in the baseline's activation_index job
    fv: dict[str, Any] = field(default_factory=lambda: {"steps": 128, "size": 96})  # the atlas's default
    top_k: int = 9
    chunk_units: int = 32
    upload: int | None = None  # upload `model` as torchvision resnet18 (random weights) with this input side

    @property
    def unit_list(self) -> list[int]:
        return list(range(self.units))

    @property
    def shard_images(self) -> int:
        return max(16, -(-self.images // self.shards))


SHAPES = "shapes-cnn"
RESNET18 = "resnet18-112"  # uploaded: torchvision resnet18, random weights, a 112 px input contract
RESNET50 = "torchvision/resnet50?weights=random&seed=0"
SMALL_FV = {"steps": 8, "size": 64}
FULL_CPU = [
    Workload("shapes", SHAPES, "features.11", 64, 64, 10_000, 64, 10_000, shards=8),
    Workload("resnet18", RESNET18, "layer3", 256, 256, 1_000, 112, 500, shards=8, fv=SMALL_FV, upload=112),
]
FULL_CUDA = [
    Workload("shapes", SHAPES, "features.11", 64, 64, 10_000, 64, 10_000, shards=8),
    Workload("resnet50", RESNET50, "layer4", 2048, 2048, 10_000, 224, 1_000, shards=8),
]
QUICK = [
    Workload("shapes", SHAPES, "features.11", 64, 64, 1_000, 64, 1_000, shards=4, fv={"steps": 4, "size": 64}),
    Workload(
        "resnet18", RESNET18, "layer3", 256, 72, 64, 112, 64, shards=2, fv={"steps": 2, "size": 32}, top_k=3, upload=112
    ),
]


def groups(units: list[int]) -> list[list[int]]:
    return [units[start : start + PER_JOB] for start in range(0, len(units), PER_JOB)]


def baseline(service: Service, w: Workload, dataset: str) -> dict[str, Any]:
    """The atlas's work as separate jobs on one worker: seconds of each part."""
    _, index = service.build(dataset, model=w.model, layer=w.layer, shard_images=w.shard_images, batch_size=BATCH)
    deconvnet, files = 0.0, {"deconvnet": 0, "actmax": 0}
    for channels in groups(w.unit_list):
        params = {"layer": w.layer, "channels": channels, "dataset": dataset, "top_k": w.top_k,
                  "method": "deconvnet", "batch_size": BATCH}  # fmt: skip
        job, seconds = service.run({"kind": "deconvnet", "model": w.model, "params": params})
        assert not job["result"]["summary"].get("index_built"), "the deconvnet job should read the index"
        deconvnet += seconds
        files["deconvnet"] += len(job["result"]["artifacts"])
    actmax = 0.0
    for units in groups(w.unit_list):
        objective = {"type": "channel", "layer": w.layer, "units": units}
        params = {**w.fv, "objective": objective, "seed": 0}
        job, seconds = service.run({"kind": "activation_maximization", "model": w.model, "params": params})
        actmax += seconds
        files["actmax"] += len(job["result"]["artifacts"])
    jobs = len(groups(w.unit_list))
    return {"index": index, "deconvnet": deconvnet, "actmax": actmax, "jobs": jobs, "files": files,
            "sum": index + deconvnet + actmax}  # fmt: skip


def atlas(service: Service, w: Workload, dataset: str, seed: int) -> dict[str, Any]:
    """One atlas with the index built in the job (dropped first) and no chunk stored (a fresh seed)."""
    service.drop_index(dataset, layer=w.layer)
    params = {"layer": w.layer, "dataset": dataset, "top_k": w.top_k, "feature_visualization": w.fv,
              "chunk_units": w.chunk_units, "shard_images": w.shard_images, "batch_size": BATCH, "seed": seed}  # fmt: skip
    if w.units != w.layer_units:
        params["units"] = w.unit_list
    job, seconds = service.run({"kind": "atlas", "model": w.model, "params": params}, timeout=1800)
    summary = job["result"]["summary"]
    assert summary["index_built"] and summary["chunks_reused"] == 0, summary
    result = service.result(job)
    steps = step_seconds(service, job["id"])
    return {"steps": steps, "seconds": seconds, "chunks": result["chunks"], "shards": -(-w.images // w.shard_images),
            "units": summary["units"], "dead": summary["dead"], "files": len(job["result"]["artifacts"])}  # fmt: skip


def step_seconds(service: Service, job_id: str) -> dict[str, float]:
    """Seconds each kind of the atlas's steps ran (started to finished on its worker), summed:
    the work itself, against which the wall time shows how well the workers were kept busy."""
    import json

    fanout = json.loads(service.redis.hget(f"glassbox:job:{job_id}", "fanout") or b"{}")
    totals: dict[str, float] = {}
    for step in [*fanout.get("shards", []), fanout.get("merge", "")]:
        kind, started, finished = service.redis.hmget(f"glassbox:job:{step}", "kind", "started_at", "finished_at")
        if kind and started and finished:
            totals[kind.decode()] = totals.get(kind.decode(), 0.0) + float(finished) - float(started)
    return totals


def upload_resnet18(service: Service, name: str, side: int) -> None:
    """torchvision resnet18 with seeded random weights, uploaded as a safetensors state dict with
    a `side` px input contract (ImageNet's normalization), and inspected by a worker."""
    import json

    import torch
    import torchvision
    from safetensors.torch import save as save_safetensors

    torch.manual_seed(0)
    weights = save_safetensors(torchvision.models.resnet18(weights=None).state_dict())
    manifest = {"name": name, "kind": "image", "format": "safetensors", "architecture": "torchvision/resnet18",
                "input": {"image": {"size": [side, side], "channels": 3, "mean": [0.485, 0.456, 0.406],
                                    "std": [0.229, 0.224, 0.225]}}}  # fmt: skip
    answer = service.client.post(
        "/v1/models", files={"file": ("resnet18.safetensors", weights)}, data={"manifest": json.dumps(manifest)}
    )
    if answer.status_code >= 300:
        raise RuntimeError(f"uploading {name}: {answer.status_code} {answer.text}")
    while (record := service.client.get(f"/v1/models/{name}").json())["status"] != "ready":
        if record["status"] == "failed":
            raise RuntimeError(f"{name} failed its inspection: {record.get('error')}")
        service.procs.check_alive()
        time.sleep(0.2)


def warm(service: Service, models: list[str]) -> None:
    """Each model loaded on every worker (best effort: as many inspection jobs at once as there
    are workers, so that each worker likely takes one), so no timed run pays a first load."""
    for model in models:
        ids = []
        for _ in service.workers:
            created = service.client.post("/v1/jobs", json={"kind": "model_inspection", "model": model})
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        wait_all_terminal(service.redis, ids, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small datasets and renderings (a smoke test)")
    parser.add_argument("--device", default="cpu", help="the workers' device (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each worker")
    parser.add_argument("--only", default="", help="comma-separated workload names (default: all)")
    args = parser.parse_args()
    import torch

    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    workloads = QUICK if args.quick else FULL_CUDA if cuda else FULL_CPU
    workloads = [w for w in workloads if not args.only or w.name in args.only.split(",")]
    work = Path(tempfile.mkdtemp(prefix="glassbox-bench-atlas-"))
    data = work / "datasets"
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    figures: dict[str, Any] = {"device": "cuda" if cuda else "cpu", "threads": args.threads,
                               "load_start": os.getloadavg(), "workloads": {}}  # fmt: skip

    datasets = {}
    for number, w in enumerate(workloads):
        name = f"{w.name}-{w.images}"
        generated = write_shards(data / name, w.images, seed=10 + number, per_tar=w.per_tar, size=w.image_size)
        datasets[w.name] = name
        figures["workloads"][w.name] = {"generated": generated}
        say(f"generated {w.images} images of {w.image_size} px for {w.name} in {generated:.0f} s")
    (work / "logs").mkdir()
    procs = Processes(work / "logs")
    env = {"GLASSBOX_DATASET_ROOTS": str(data), "OMP_NUM_THREADS": str(args.threads),
           "GLASSBOX_WORKER_LOST_AFTER_SECONDS": str(WORKER_LOST_AFTER_S)}  # fmt: skip
    try:
        service = Service(procs, start_service(procs, "cuda" if cuda else "cpu", env=env))
        for w in workloads:
            service.register(datasets[w.name], data / datasets[w.name])
            if w.upload:
                upload_resnet18(service, w.model, w.upload)
        warm(service, [w.model for w in workloads])
        for w in workloads:
            f = figures["workloads"][w.name]
            f["baseline"] = baseline(service, w, datasets[w.name])
            say(f"{w.name} baseline: {f['baseline']}")
            f["atlas1"] = atlas(service, w, datasets[w.name], seed=1)
            say(f"{w.name} atlas, 1 worker: {f['atlas1']['seconds']:.1f} s (sum {f['baseline']['sum']:.1f} s)")
        service.start_worker()
        warm(service, [w.model for w in workloads])
        for w in workloads:
            f = figures["workloads"][w.name]
            f["atlas2"] = atlas(service, w, datasets[w.name], seed=2)
            say(f"{w.name} atlas, 2 workers: {f['atlas2']['seconds']:.1f} s")
    finally:
        procs.stop_all()
    figures["load_end"] = os.getloadavg()
    figures["minutes"] = (time.monotonic() - started) / 60
    publish(render(figures, workloads, args), results_dir() / "atlas.md")
    return 0


def describe(w: Workload) -> str:
    model = w.model.split("?")[0] + (" (random weights, seed 0)" if "weights=random" in w.model else "")
    if w.upload:
        model = (f"`{w.model}`: torchvision resnet18 (random weights, seed 0) uploaded as a safetensors state dict "
                 f"with a {w.upload} x {w.upload} input contract (a quarter of 224 px's pixels, to fit this CPU)")  # fmt: skip
    units = f"all {w.units} units" if w.units == w.layer_units else f"the first {w.units} of its {w.layer_units} units"
    fv = ", ".join(f"{k} {v}" for k, v in w.fv.items())
    return (f"{model} `{w.layer}`, {units}, over {w.images:,} generated {w.image_size} x {w.image_size} drawings; "
            f"top_k {w.top_k}, deconvnet projections; feature visualization: {fv} (the rest activation "
            f"maximization's defaults); index in {w.shards} shards of {w.shard_images:,} images; "
            f"chunks of {w.chunk_units} units; batches of {BATCH}")  # fmt: skip


def steps_line(one: dict[str, Any], two: dict[str, Any]) -> str:
    """Where the 2-worker efficiency goes: the steps' own time (grows when the workers share
    the cores) against how much of the wall time the workers spent in steps."""
    names = {"activation_index_shard": "index shards", "activation_index_merge": "merge", "atlas_chunk": "chunks",
             "atlas_assemble": "assembly"}  # fmt: skip
    parts = lambda run: ", ".join(f"{names.get(k, k)} {v:.1f}" for k, v in run["steps"].items())  # noqa: E731
    busy1, busy2 = sum(one["steps"].values()), sum(two["steps"].values())
    return (f"The atlas's steps, summed over their workers (started to finished): 1 worker {busy1:.1f} s ({parts(one)}); "
            f"2 workers {busy2:.1f} s ({parts(two)}), **{busy2 / busy1:.2f}x the 1-worker steps' time** (the same "
            f"work: the cores are shared); the workers were in steps {busy1 / one['seconds']:.0%} of the 1-worker "
            f"wall time and {busy2 / (2 * two['seconds']):.0%} of 2 x the 2-worker wall time.")  # fmt: skip


def render(figures: dict[str, Any], workloads: list[Workload], args: argparse.Namespace) -> str:
    import torch

    command = "uv run python -m bench.atlas" + (" --quick" if args.quick else "") + f" --device {args.device}"
    if args.threads != 1:
        command += f" --threads {args.threads}"
    if args.only:
        command += f" --only {args.only}"
    machine = torch.cuda.get_device_name() if figures["device"] == "cuda" else f"{os.cpu_count()} CPUs"
    load = lambda triple: " / ".join(f"{v:.1f}" for v in triple)  # noqa: E731
    lines = [
        "# The layer atlas: one job against the same work as separate jobs (issue 16)",
        "",
        f"Command: `{command}`. {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; {machine}, "
        f"torch {torch.__version__}; load average (1 / 5 / 15 min) {load(figures['load_start'])} at the start and "
        f"{load(figures['load_end'])} at the end (a shared machine); the whole run took {figures['minutes']:.0f} min.",
        "",
        "One redis-server, one API and the workers on this machine, every worker with "
        f"OMP_NUM_THREADS={figures['threads']}; datasets of seeded shapes drawings (worker/models/shapes.py) "
        "registered in place (`file://`), as in bench/index.py. Every time is POST to succeeded, read by polling "
        "Redis. The baseline runs on one worker: an `activation_index` job on the layer, then `deconvnet` jobs on "
        f"all the units ({PER_JOB} channels a job at most) reading that index, then `activation_maximization` jobs "
        f"rendering all the units ({PER_JOB} a job at most, channel objectives, the atlas's rendering params). "
        "Each atlas run first drops the layer's index, so that the atlas builds it (its shards, then its merge): "
        "**both the sum and the atlas include indexing the layer**; each uses a fresh seed, so no chunk is reused "
        "(checked: `index_built` true, `chunks_reused` 0). Each model was loaded on the workers before the timed "
        "runs (an inspection job per worker); the second worker joined just before the 2-worker runs. "
        f"GLASSBOX_WORKER_LOST_AFTER_SECONDS={WORKER_LOST_AFTER_S} (default 20): in an earlier run a worker's "
        "heartbeat went silent for over 20 s during a resnet18 chunk, the reaper requeued that chunk and the "
        "atlas's assembly never ran (reported; not a throughput question).",
        "",
        "| workload | baseline sum, 1 worker | atlas, 1 worker | atlas / sum (goal <= 1.1) "
        "| atlas, 2 workers | speed-up | efficiency t1 / (2 t2) (goal >= 0.8) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in workloads:
        f = figures["workloads"][w.name]
        total, one, two = f["baseline"]["sum"], f["atlas1"]["seconds"], f["atlas2"]["seconds"]
        lines.append(
            f"| {w.name} `{w.layer}`, {w.units} units, {w.images:,} images | {total:.1f} s | {one:.1f} s "
            f"| **{one / total:.2f}x** | {two:.1f} s | {one / two:.2f}x | **{one / (2 * two):.2f}** |"
        )
    for w in workloads:
        f = figures["workloads"][w.name]
        b, a1, a2 = f["baseline"], f["atlas1"], f["atlas2"]
        lines += [
            "",
            f"## {w.name}: {describe(w)}",
            "",
            "| run | workers | jobs | seconds | share |",
            "|---|---:|---:|---:|---:|",
            f"| `activation_index` ({w.shards} shards) | 1 | 1 | {b['index']:.1f} | {b['index'] / b['sum']:.0%} |",
            f"| `deconvnet` (top_k {w.top_k}, reads the index) | 1 | {b['jobs']} | {b['deconvnet']:.1f} "
            f"| {b['deconvnet'] / b['sum']:.0%} |",
            f"| `activation_maximization` | 1 | {b['jobs']} | {b['actmax']:.1f} | {b['actmax'] / b['sum']:.0%} |",
            f"| **baseline sum** | 1 | {1 + 2 * b['jobs']} | **{b['sum']:.1f}** | 100% |",
            f"| `atlas` ({a1['shards']} index shards + merge, {a1['chunks']} chunks, assembly) | 1 | 1 "
            f"| **{a1['seconds']:.1f}** | {a1['seconds'] / b['sum']:.0%} |",
            f"| `atlas`, the same | 2 | 1 | **{a2['seconds']:.1f}** | {a2['seconds'] / b['sum']:.0%} |",
            "",
            steps_line(a1, a2),
            "",
            f"{a1['units']} units in the atlas, {a1['dead']} of them dead. Artifacts written: the deconvnet jobs "
            f"{b['files']['deconvnet']} (per neuron a projection PNG and a patch PNG, reconstructions.npy, a grid), "
            f"the activation-maximization jobs {b['files']['actmax']}, the atlas {a1['files']} "
            "(per unit an exemplar strip, a best patch and a feature visualization; atlas.json, two sheets).",
        ]
    if figures["device"] != "cuda":
        lines += [
            "",
            f"On the **CPU** ({os.cpu_count()} cores shared with other work): no GPU rows in this run. "
            "`--device cuda` runs shapes-cnn and torchvision resnet50 `layer4` (random weights, 224 px, 2048 units, "
            "10,000 images, the atlas's default rendering: 128 steps at 96 px) instead of the CPU's resnet18 "
            "`layer3` at 112 px over 1,000 images with a lighter rendering (8 steps at 64 px: the default 128 steps "
            "over 256 units would take hours on one core per worker).",
        ]
    if args.quick:
        lines += ["", "`--quick`: small datasets, few steps and fewer units: a smoke test, not figures."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
