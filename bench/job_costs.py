"""What a job with default settings costs, end to end, as a user submits it.

    uv run python -m bench.job_costs [--device cpu|cuda] [--quick]

Starts its own redis-server, API and one worker (`GLASSBOX_DEVICE=--device`), then submits,
one at a time on the idle service, a job of every kind with the defaults a newcomer would use
(the README's first jobs), and reports per job:

- **end to end**: from `POST /v1/jobs` until a poll sees `succeeded` (what the user waits);
- **on the worker**: `finished_at - started_at` (load, compute, figures, artifacts);
- **core compute**: the kind's own work without figures and artifacts: activation
  maximization's `render_seconds` and tabular attribution's `attribution_seconds` (both reported
  by the job), model inspection's `load_seconds`; deconvnet reports none, so its forward pass
  over the images and the batched projection are timed here, in this process, on the same
  model, images and neurons (worker.core.deconvnet);
- **estimate**: what `POST /v1/jobs/estimate` answered for the same body before the job ran.

The torchvision model is inspected first (as a user lists its layers before using them), so
its later jobs find it loaded, like every built-in model. Measurements are kept per device in
job_costs.json next to the table, so that a `--device cuda` run adds the GPU column to the CPU
one measured elsewhere. `--quick` (a smoke test) renders fewer steps and writes elsewhere.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import results_dir
from bench.__main__ import git_commit
from bench.processes import Processes, start_service

RESNET = "torchvision/resnet50?weights=random&seed=0"
RESNET_IMAGES = 4  # inline images of the resnet50 deconvnet job ("a few images")
RESNET_LAYER = "layer3"
RESNET_RUN_STEPS = 32
DEFAULT_STEPS = 256


@dataclass
class Case:
    label: str
    kind: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    # Run this many optimization steps instead of the default 256 and add the rest at the job's
    # own measured time per step (the loop does the same work every step): resnet50's 256 steps
    # take many minutes on a 2-core CPU.
    run_steps: int | None = None


def cases(quick: bool, inline_images: list[str]) -> list[Case]:
    steps = {"steps": 16} if quick else {}  # actmax's default is 256
    return [
        Case("model_inspection of shapes-cnn", "model_inspection", "shapes-cnn"),
        Case("model_inspection of resnet50 (random weights), first load", "model_inspection", RESNET),
        Case(
            "deconvnet, shapes-cnn `features.6` over shapes-val (400 images)",
            "deconvnet",
            "shapes-cnn",
            {"layer": "features.6", "dataset": "shapes-val"},
        ),
        Case(
            "activation_maximization, shapes-cnn, 1 class",
            "activation_maximization",
            "shapes-cnn",
            {"objective": {"type": "class", "units": [0]}, **steps},
        ),
        Case(
            "activation_maximization, shapes-cnn, its 10 classes",
            "activation_maximization",
            "shapes-cnn",
            {"objective": {"type": "class", "units": list(range(10))}, **steps},
        ),
        Case(
            "tabular_attribution, retail-mlp, 1 row (integrated_gradients)",
            "tabular_attribution",
            "retail-mlp",
            {"dataset": "retail-sample", "indices": [0]},
        ),
        Case(
            "tabular_attribution, retail-mlp, 200 rows, kernel_shap",
            "tabular_attribution",
            "retail-mlp",
            {"dataset": "retail-sample", "sample": 200, "method": "kernel_shap"},
        ),
        Case(
            f"deconvnet, resnet50 `{RESNET_LAYER}`, {len(inline_images)} inline images",
            "deconvnet",
            RESNET,
            {"layer": RESNET_LAYER, "images": inline_images},
        ),
        Case(
            "activation_maximization, resnet50, 1 class" + ("" if quick else f" ({RESNET_RUN_STEPS} of the 256 steps run)"),
            "activation_maximization",
            RESNET,
            {"objective": {"type": "class", "units": [0]}, **steps},
            run_steps=None if quick else RESNET_RUN_STEPS,
        ),
    ]


# One tiny job per kind first, untimed: the first job of a kind on a new worker also pays one-time
# costs (imports, first use of the model's kernels) that an estimate leaves out.
WARM_UP = [
    {"kind": "deconvnet", "model": "shapes-cnn", "params": {"layer": "features.6", "dataset": "shapes-val", "top_channels": 1, "top_k": 1}},
    {"kind": "activation_maximization", "model": "shapes-cnn", "params": {"objective": {"type": "class", "units": [0]}, "steps": 2}},
    {"kind": "tabular_attribution", "model": "retail-mlp", "params": {"dataset": "retail-sample", "indices": [0], "method": "saliency"}},
]


def warm_up(client: httpx.Client) -> float:
    started = time.perf_counter()
    for body in WARM_UP:
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        while client.get(f"/v1/jobs/{job_id}").json()["status"] not in ("succeeded", "failed", "canceled"):
            time.sleep(0.05)
    return time.perf_counter() - started


def shapes_val_pngs(count: int) -> list[str]:
    from PIL import Image

    from worker.models.shapes import shapes_val

    images, _ = shapes_val()
    encoded = []
    for picture in images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return encoded


def run_case(client: httpx.Client, case: Case) -> dict[str, Any]:
    body = {"kind": case.kind, "model": case.model, "params": case.params}
    answer = client.post("/v1/jobs/estimate", json=body)
    estimate = answer.json() if answer.status_code == 200 else None
    if case.run_steps is not None:
        body = {**body, "params": {**case.params, "steps": case.run_steps}}
    started = time.perf_counter()
    created = client.post("/v1/jobs", json=body)
    created.raise_for_status()
    job_id = created.json()["id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    end_to_end = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"{case.label}: {job['status']} {job.get('error')}")
    worker = _seconds(job["finished_at"]) - _seconds(job["started_at"])
    summary = job["result"]["summary"]
    core = summary.get("render_seconds") or summary.get("load_seconds")
    if case.kind == "tabular_attribution":
        result = client.get(f"/v1/jobs/{job_id}/artifacts/result.json").json()
        core = _find_key(result, "attribution_seconds")
    if case.run_steps is not None:
        result = client.get(f"/v1/jobs/{job_id}/artifacts/result.json").json()
        rest = (DEFAULT_STEPS - case.run_steps) * _find_key(result, "step_seconds")
        end_to_end, worker, core = end_to_end + rest, worker + rest, core + rest
    return {
        "label": case.label,
        "kind": case.kind,
        "end_to_end": end_to_end,
        "worker": worker,
        "core": core,
        "estimate": estimate,
    }


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def _find_key(document: Any, key: str) -> Any:
    if isinstance(document, dict):
        if key in document:
            return document[key]
        for value in document.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def deconvnet_core_seconds(model_id: str, params: dict[str, Any], device: str) -> float:
    """The deconvnet job's compute (forward over the images to pick neurons, then the batched
    projection), in this process: the job itself does not report it."""
    import numpy as np
    import torch

    from worker.core.deconvnet import channel_maxima, project, strongest_channels, top_neurons
    from worker.core.imaging import prepare_images
    from worker.datasets import decode_image

    if model_id == "shapes-cnn":
        from worker.models.shapes import SHAPES_INPUT, load_shapes_cnn, shapes_val

        model, contract = load_shapes_cnn(device=device), SHAPES_INPUT
        pictures = list(shapes_val()[0])
    else:
        import torchvision

        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval().to(device)
        contract = {"image": {"size": [224, 224], "channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
        pictures = [decode_image(base64.b64decode(text)) for text in params["images"]]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layer, batch = params["layer"], 32
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def compute() -> None:
        batches = (prepare_images(pictures[i : i + batch], contract, device) for i in range(0, len(pictures), batch))
        values, positions = channel_maxima(model, batches, layer)
        neurons = top_neurons(values, positions, strongest_channels(values, 8), 9)
        used = sorted({n.image_index for n in neurons})
        images = prepare_images([np.asarray(pictures[i]) for i in used], contract, device)
        row = {index: r for r, index in enumerate(used)}
        local = [type(n)(row[n.image_index], n.channel, n.position, n.activation) for n in neurons]
        project(model, images, layer, local, "deconvnet", batch)
        sync()

    compute()  # warm-up: the worker that ran the job is warm too
    started = time.perf_counter()
    compute()
    return time.perf_counter() - started


def install_size() -> dict[str, Any]:
    """The virtual environment's size on disk and its biggest packages (du, as a user would)."""
    venv = Path(sys.prefix)  # the environment running this benchmark: the project's .venv under `uv run`
    total = subprocess.run(["du", "-sh", str(venv)], capture_output=True, text=True).stdout.split("\t")[0]
    site = next(venv.glob("lib/python*/site-packages"))
    sizes = subprocess.run(
        ["du", "-s", "--block-size=1M", *[str(p) for p in site.iterdir() if p.is_dir() and ".dist-info" not in p.name]],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    biggest = sorted(((int(s.split("\t")[0]), Path(s.split("\t")[1]).name) for s in sizes), reverse=True)[:8]
    return {"total": total, "biggest_mib": biggest}


def render(measurements: dict[str, dict[str, Any]], install: dict[str, Any] | None) -> str:
    devices = [d for d in ("cpu", "cuda") if d in measurements]
    labels = list(dict.fromkeys(row["label"] for d in devices for row in measurements[d]["rows"]))
    lines = [
        "# What a job with default settings costs",
        "",
        "Command: `uv run python -m bench.job_costs --device <device>`. One API, one worker, one job at a time "
        "on an idle service, after one tiny untimed job of each kind (the first job of a kind on a new worker "
        "also pays one-time imports, a few seconds); the model already loaded on the worker except in the "
        "first resnet50 job. Seconds.",
        "",
    ]
    for device in devices:
        m = measurements[device]["meta"]
        lines.append(f"- {device}: {m['when']}, commit {m['commit']}, {m['machine']}.")
    header = "| job |"
    rule = "|---|"
    for device in devices:
        header += f" {device}: end to end | on the worker | core compute | estimate |"
        rule += "---|---|---|---|"
    lines += ["", header, rule]
    for label in labels:
        line = f"| {label} |"
        for device in devices:
            row = next((r for r in measurements[device]["rows"] if r["label"] == label), None)
            if row is None:
                line += " | | | |"
                continue
            estimate = (row["estimate"] or {}).get("seconds", {}).get("gpu" if device == "cuda" else "cpu")
            core = "" if row["core"] is None else f"{row['core']:.2f}"
            est = "" if estimate is None else f"{estimate:.1f} ({estimate / row['end_to_end']:.1f}x)"
            line += f" {row['end_to_end']:.2f} | {row['worker']:.2f} | {core} | {est} |"
        lines.append(line)
    lines += [
        "",
        "core compute: deconvnet's forward over the images and batched projection (timed in the benchmark's "
        "process), activation maximization's optimization, tabular attribution's method, model inspection's "
        "load. estimate: `POST /v1/jobs/estimate` for the same body (its ratio to the end-to-end time).",
    ]
    if install:
        lines += [
            "",
            f"Install: `.venv` is {install['total']} on disk (`du -sh .venv`); biggest packages (MiB): "
            + ", ".join(f"{name} {size}" for size, name in install["biggest_mib"])
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None, help="worker device (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="16 optimization steps instead of 256; fewer images")
    parser.add_argument("--note", default="", help="how the machine was used meanwhile, for the table")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    inline_images = shapes_val_pngs(2 if args.quick else RESNET_IMAGES)
    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    procs = Processes(log_dir)
    rows = []
    try:
        base = start_service(procs, device)
        with httpx.Client(base_url=base, timeout=600) as client:
            print(f"warm-up: {warm_up(client):.1f} s", flush=True)
            for case in cases(args.quick, inline_images):
                row = run_case(client, case)
                if case.kind == "deconvnet":
                    row["core"] = deconvnet_core_seconds(case.model.split("?")[0], case.params, device)
                rows.append(row)
                save(device, rows, args.quick, note=args.note)  # as it goes: a long run stopped early keeps what it measured
                print(f"{row['label']}: {row['end_to_end']:.2f} s end to end, {row['worker']:.2f} s on the worker, "
                      f"core {row['core']}, estimate {(row['estimate'] or {}).get('seconds')}", flush=True)
    finally:
        procs.stop_all()

    print(save(device, rows, args.quick, install_size(), args.note))
    return 0


def save(device: str, rows: list[dict[str, Any]], quick: bool, install: dict[str, Any] | None = None, note: str = "") -> str:
    """Keep this device's rows in job_costs.json (other devices' stay) and render the table."""
    import torch

    folder = results_dir()
    store = folder / "job_costs.json"
    measurements = json.loads(store.read_text()) if store.exists() else {}
    commit = git_commit()
    if device.startswith("cuda"):
        machine = f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPUs"
    else:
        machine = f"{os.cpu_count()} CPUs ({platform.machine()}), torch {torch.__version__}"
    load = f"load average {os.getloadavg()[0]:.1f} at the end"
    meta = {
        "when": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "machine": f"{machine}, {load}" + (", --quick" if quick else "") + (f"; {note}" if note else ""),
    }
    measurements[device.split(":")[0]] = {"meta": meta, "rows": rows, "install": install or measurements.get(device.split(":")[0], {}).get("install")}
    store.write_text(json.dumps(measurements, indent=1) + "\n")
    table = render(measurements, install)
    (folder / "job_costs.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
