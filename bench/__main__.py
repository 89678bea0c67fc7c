"""Every benchmark from one command, gathered into bench/results/REPORT.md.

    uv sync --group bench            # shap, for the tabular attribution comparison
    uv run python -m bench [--only scaling,backbone] [--device cpu|cuda] [--quick]

Each benchmark runs in its own process (as `uv run python -m bench.<name> ...` would), writes its
own table to bench/results/, and the report is those tables under one summary of what ran, with
which command and how long it took. Every figure in them is a ratio or a paired comparison
measured within that one benchmark's run. `--quick` runs smaller versions (a smoke test of
the benchmarks themselves) and writes to test-artifacts/bench-quick/ instead, so that it never
overwrites the committed figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK_RESULTS = ROOT / "test-artifacts" / "bench-quick"


@dataclass(frozen=True)
class Benchmark:
    name: str
    what: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    needs: tuple[str, ...] = ()
    takes_device: bool = False

    def results_file(self, folder: Path, device: str) -> Path:
        if self.name == "deconvnet":
            return folder / f"deconvnet-{device.split(':')[0]}.md"
        return folder / f"{self.name}.md"


# name, what it measures, its arguments for a full run and for --quick, then what it needs.
B = Benchmark
BENCHMARKS = [
    B("scaling", "throughput with 1/2/4 workers; create, get, download latency by concurrency vs bare FastAPI", (), ("--quick",)),
    B("backbone", "status GET vs bare FastAPI; create-to-running; per-job overhead", (), ("--quick",)),
    B("model_cache", "first job on a model vs the second (worker model cache)", (), ()),
    B("deconvnet", "batched projection vs a per-neuron loop and Captum", ("--size", "96"),
      ("--size", "64", "--images", "32", "--baseline-passes", "1"), takes_device=True),
    B("actmax", "optimization step vs raw truncated forward+backward; batch scaling", ("--steps", "4"),
      ("--steps", "1", "--reps", "1", "--scaling", "1,8"), takes_device=True),
    B("tabular_attribution", "attribution rows/s; kernel_shap vs shap's KernelExplainer at equal error", (),
      ("--rows", "200", "--repeats", "1", "--shap-rows", "20", "--sweep", "10,50"), needs=("shap",)),
    B("interactions", "exact pairwise Shapley interactions (k-SII) rows/s vs shapiq's exact computation", (),
      ("--rows", "40", "--shapiq-rows", "8", "--repeats", "1"), needs=("shapiq",)),
    B("job_costs", "a job of every kind with default settings, end to end, against POST /v1/jobs/estimate", (),
      ("--quick",), takes_device=True),
    B("index", "activation index build vs decode and forward alone; peak RSS; deconvnet before/after indexing", (), ("--quick",), takes_device=True),
    B("storage", "Redis used_memory before/after the blob store; 1 GiB dataset upload/download and API peak RSS "
      "on file and s3; artifact download latency vs the old Redis path", (), ("--quick",)),
    B("atlas", "a layer atlas (1 and 2 workers) vs the sum of its index, deconvnet and activation maximization jobs",
      (), ("--quick",), takes_device=True),
    B("latency", "one-row tabular jobs (IG, KernelSHAP, exact Shapley), POST to succeeded, vs a job that does "
      "nothing; where their time goes", (), ("--quick",), takes_device=True),
    B("feature_vis", "MACO vs Lucid-style FFT feature visualization at equal steps and time; the trust checks' cost",
      (), ("--quick",), takes_device=True),
]


def git_commit() -> str:
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    return run.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(b.name for b in BENCHMARKS))
    parser.add_argument("--device", default=None, help="for deconvnet and actmax (default: cuda when available)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    wanted = [b for b in BENCHMARKS if not args.only or b.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {[b.name for b in BENCHMARKS]}")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    env = dict(os.environ)
    if args.quick:
        env["GLASSBOX_BENCH_RESULTS"] = str(QUICK_RESULTS)
    folder = Path(env.get("GLASSBOX_BENCH_RESULTS") or ROOT / "bench" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for bench in wanted:
        extra = list(bench.quick if args.quick else bench.full)
        if bench.takes_device:
            extra += ["--device", args.device]
        command = ["uv", "run", "python", "-m", f"bench.{bench.name}", *extra]
        missing = [m for m in bench.needs if importlib.util.find_spec(m) is None]
        if missing:
            rows.append((bench, shlex.join(command), "skipped", f"needs {', '.join(missing)}: `uv sync --group bench`"))
            continue
        print(f"== {shlex.join(command)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", f"bench.{bench.name}", *extra], cwd=ROOT, env=env)
        seconds = time.monotonic() - started
        status = "ok" if done.returncode == 0 else f"**exit {done.returncode}**"
        rows.append((bench, shlex.join(command), status, f"{seconds:.0f} s"))
        results = bench.results_file(folder, args.device)
        if done.returncode == 0 and results.exists():
            # One heading level down, so that each benchmark is a section of the report.
            text = results.read_text().splitlines()
            sections.append("\n".join("#" + line if line.startswith("#") else line for line in text))

    lines = [
        "# Glassbox benchmark report",
        "",
        f"`uv run python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; {os.cpu_count()} CPUs, "
        f"{platform.machine()}, Python {platform.python_version()}; device for the model benchmarks: {args.device}"
        + (" (--quick: smaller runs)" if args.quick else "")
        + ".",
        "",
        "| benchmark | measures | command | status | time |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {b.name} | {b.what} | `{cmd}` | {status} | {took} |" for b, cmd, status, took in rows]
    report = "\n".join(lines) + "\n\n" + "\n\n".join(sections)
    (folder / "REPORT.md").write_text(report)
    print(report)
    return 0 if all(status in ("ok", "skipped") for _, _, status, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
