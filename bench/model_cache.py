"""First job on a model versus the second: the worker's model cache.

    uv run python -m bench.model_cache

Starts its own redis-server, API and one worker; runs `model_inspection` jobs twice on each
model and prints, per model, the wall time from POST to `succeeded` and the worker's load time
(both jobs in the same run). The second job must not reload (cache_hit true, load ~0).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import results_dir
from bench.processes import ROOT, Processes, start_service

MODELS = [
    "torchvision/vgg16?weights=random&seed=0",
    "torchvision/resnet50?weights=random&seed=0",
    "shapes-cnn",
]


def run_job(client: httpx.Client, model: str) -> tuple[float, dict]:
    started = time.perf_counter()
    job = client.post("/v1/jobs", json={"kind": "model_inspection", "model": model}).json()
    while True:
        current = client.get(f"/v1/jobs/{job['id']}").json()
        if current["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.01)
    if current["status"] != "succeeded":
        raise RuntimeError(f"{model}: {current['error']}")
    return time.perf_counter() - started, current["result"]["summary"]


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    procs = Processes(log_dir)
    try:
        base = start_service(procs, os.environ.get("GLASSBOX_DEVICE", "auto"), ready_within=120)
        client = httpx.Client(base_url=base, timeout=120)
        device = client.get("/readyz").json()
        rows = []
        for model in MODELS:
            first_wall, first = run_job(client, model)
            second_wall, second = run_job(client, model)
            rows.append(
                f"| `{model}` | {first_wall * 1000:.0f} ms (load {first['load_seconds'] * 1000:.0f} ms, "
                f"cache_hit {first['cache_hit']}) | {second_wall * 1000:.0f} ms (load "
                f"{second['load_seconds'] * 1000:.1f} ms, cache_hit {second['cache_hit']}) | "
                f"{first_wall / second_wall:.1f}x |"
            )
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        table = "\n".join(
            [
                "# Model cache: first job on a model versus the second",
                "",
                f"Command: `uv run python -m bench.model_cache` (commit {commit}, {os.cpu_count()} CPUs, "
                f"worker device {first.get('device')}; {device['workers']} worker). `model_inspection` jobs, "
                "POST to `succeeded` seen by polling. shapes-cnn is loaded when the worker starts, so "
                "even its first job is a hit.",
                "",
                "| model | first job | second job | first / second |",
                "|---|---|---|---|",
                *rows,
            ]
        )
        print(table)
        (results_dir() / "model_cache.md").write_text(table + "\n")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
