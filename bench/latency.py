"""One-row jobs on a warm worker, POST to `succeeded` as the client sees it (issue 18: explain
every prediction), against a job that does nothing, in the same run.

    uv run python -m bench.latency [--jobs 100] [--quick] [--threads 1] [--device cpu] [--profile N]

Starts its own redis-server, API and one worker (bench/processes.py; OMP_NUM_THREADS=--threads
on the worker), then submits, one at a time and round-robin so that a change in the machine's
load falls on every case alike, --jobs jobs of each case:

- `integrated_gradients` of one row of retail-sample on retail-mlp (defaults: 100 steps, mean
  baseline);
- `kernel_shap`, n_samples=64, against a background of 20 rows of retail-sample;
- exact `shapley` (all 512 coalitions of the 9 variables), against the same background;
- the baseline: the lifecycle test kind with 0 steps (tests/plugins/lifecycle.py), a job whose
  time is the backbone's own (API, Redis, worker, artifact store, polling);
- and, fewer, the integrated-gradients job asking for everything a one-row job made before it
  paid only for what it asks: the dataset views and the charts (`dataset_views`, `charts`).

Each job explains another row (row i of the table for the i-th job). The client POSTs and then
polls `GET /v1/jobs/{id}` back to back until the job has ended, as backbone.py's per-job
overhead does; the figures are the median and p90 of that time, their ratio to the baseline's
median, and the medians of the stage breakdown every job reports (`result.summary.timings`).
`--profile N` then runs N more jobs of each one-row case with the worker under cProfile and adds
its heaviest calls (the measured jobs run unprofiled).
Writes bench/results/latency.md (--quick: fewer jobs, written elsewhere by `python -m bench`).
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import shlex
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from bench import publish, results_dir
from bench.__main__ import git_commit
from bench.httpload import percentile
from bench.jobclient import record
from bench.processes import ROOT, Processes, end_on_signals, start_service, stop_after_run

RESULTS = results_dir() / "latency.md"
ROWS = 3000  # retail-sample's rows
BACKGROUND = {"background": "retail-sample", "size": 20}
# The code a profile line is worth showing from (the rest is the interpreter's and RQ's).
PROFILED = ("worker/", "service/", "captum/", "torch/", "matplotlib/", "json/", "numpy/", "redis/")
STAGES = ("queue_wait_seconds", "load_seconds", "compute_seconds", "artifacts_seconds", "worker_seconds")


@dataclass
class Case:
    label: str
    kind: str
    model: str
    params: dict
    goal_ms: float | None = None
    share: float = 1.0  # of --jobs
    walls: list[float] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    server: list[float] = field(default_factory=list)  # created_at to finished_at

    def body(self, number: int) -> dict:
        params = dict(self.params)
        if self.kind == "tabular_attribution":
            params["indices"] = [number % ROWS]
        return {"kind": self.kind, "model": self.model, "params": params}


def cases() -> list[Case]:
    tabular = {"kind": "tabular_attribution", "model": "retail-mlp"}
    data = {"dataset": "retail-sample"}
    return [
        Case("job that does nothing (lifecycle kind, 0 steps): the baseline", "test-lifecycle", "test-model",
             {"steps": 0, "artifact_bytes": 16}),
        Case("integrated_gradients, 1 row", **tabular, params=data, goal_ms=25),
        Case("kernel_shap n_samples=64, background 20, 1 row", **tabular,
             params={**data, "method": "kernel_shap", "n_samples": 64, "baseline": BACKGROUND}, goal_ms=60),
        Case("exact shapley, background 20, 1 row", **tabular,
             params={**data, "method": "shapley", "baseline": BACKGROUND}, goal_ms=60),
        Case("integrated_gradients, 1 row, asking for the dataset views and charts", **tabular,
             params={**data, "dataset_views": True, "charts": True}, share=0.2),
    ]  # fmt: skip


def run_one(client: httpx.Client, r: redis.Redis, case: Case, number: int) -> None:
    started = time.perf_counter()
    response = client.post("/v1/jobs", json=case.body(number))
    if response.status_code != 202:
        raise RuntimeError(f"create failed: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
    wall = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"{case.label}: job {job_id} {job['status']}: {job.get('error')}")
    case.walls.append(wall)
    case.timings.append(job["result"]["summary"]["timings"])
    stamps = record(r, job_id)
    case.server.append(float(stamps["finished_at"]) - float(stamps["created_at"]))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(cmd: str, all_cases: list[Case], args: argparse.Namespace, profile: str) -> str:
    baseline = statistics.median(all_cases[0].walls)
    lines = [
        "# One-row jobs: POST to `succeeded`",
        "",
        f"Command: `{cmd}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {git_commit()}; {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}; device {args.device}; the worker with OMP_NUM_THREADS={args.threads}. "
        "One redis-server, one API process, one worker and this client share the machine; jobs one at a time, "
        "the cases round-robin, each job a different row of retail-sample on retail-mlp. Wall: from the POST until "
        "a GET polled back to back returns `succeeded`.",
        "",
        "| job | jobs | median ms | p90 ms | median / baseline | beyond the baseline, ms | goal (median) | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in all_cases:
        median = statistics.median(case.walls)
        goal = f"<= {case.goal_ms:g} ms" if case.goal_ms else ""
        met = ("yes" if median * 1000 <= case.goal_ms else "**no**") if case.goal_ms else ""
        lines.append(
            f"| {case.label} | {len(case.walls)} | {ms(median)} | {ms(percentile(case.walls, 90))} | "
            f"{median / baseline:.2f} | {ms(median - baseline)} | {goal} | {met} |"
        )
    lines += [
        "",
        "Where the time goes: medians of the stage breakdown each job reports (`result.summary.timings`, ms), of "
        "the server's created-to-finished time, and of what the client saw beyond it (the POST's answer, the "
        "polls, the finish being recorded).",
        "",
        "| job | queue wait | load | compute | artifacts | on the worker | created to finished | client beyond it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in all_cases:
        medians = [statistics.median((t[name] or 0.0) for t in case.timings) for name in STAGES]
        server = statistics.median(case.server)
        beyond = statistics.median(w - s for w, s in zip(case.walls, case.server))
        lines.append(f"| {case.label} | " + " | ".join(ms(m) for m in medians) + f" | {ms(server)} | {ms(beyond)} |")
    if profile:
        lines += [
            "",
            f"Profile of the worker (cProfile, `--profile {args.profile}`: that many more jobs of each one-row case, "
            "after the measured ones): the heaviest calls, by cumulative time over all of them.",
            "",
            "```",
            profile,
            "```",
        ]
    return "\n".join(lines)


def worker_profile(path: Path, top: int) -> str:
    """The calls with the most cumulative time within the jobs (at most the job function's own
    total: the worker's idle loop is left out), from the worker's cProfile."""
    if not path.exists():
        return "(no profile written: the worker did not exit cleanly)"
    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    jobs = max(
        (ct for (file, _, name), (_, _, _, ct, _) in entries.items() if name == "run_job" and "worker/tasks" in file),
        default=0.0,
    )
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in entries.items():
        where = file.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
        if cumulative <= jobs and any(part in where for part in PROFILED):
            rows.append((cumulative, own, calls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    width = max((len(label) for *_, label in rows[:top]), default=0)
    lines = [f"{'call':<{width}}  {'calls':>7}  {'cumulative':>10}  {'own':>8}"]
    lines += [f"{label:<{width}}  {calls:>7}  {cum:9.3f}s  {own:7.3f}s" for cum, own, calls, label in rows[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="sequential jobs per case (100)")
    parser.add_argument("--quick", action="store_true", help="20 jobs per case")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the worker (1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the measured jobs, N more one-row jobs per case with the worker under cProfile, and its heaviest calls",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    jobs = 20 if args.quick else args.jobs
    cmd = shlex.join(["uv", "run", "python", "-m", "bench.latency", *(argv if argv is not None else sys.argv[1:])])

    end_on_signals()

    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-latency-"))
    procs = Processes(log_dir)
    profile_file = log_dir / "worker.prof"
    env = {
        "GLASSBOX_PLUGINS": "tests.plugins.lifecycle",
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONPATH": str(ROOT),
    }
    # The worker profiles nothing until SIGUSR1 (bench/profiled_worker.py): the figures are unaffected.
    worker = ("bench.profiled_worker", str(profile_file)) if args.profile else ("service.cli", "worker")
    all_cases = cases()
    try:
        base = start_service(procs, args.device, env=env, worker_module=worker)
        r = redis.Redis.from_url(procs.service_env["GLASSBOX_REDIS_URL"])
        with httpx.Client(base_url=base, timeout=60) as client:
            print("warm-up ...", file=sys.stderr, flush=True)
            for case in all_cases:
                for number in range(5):
                    run_one(client, r, case, ROWS - 1 - number)
                case.walls.clear(), case.timings.clear(), case.server.clear()
            print(f"{jobs} jobs per case ...", file=sys.stderr, flush=True)
            for number in range(jobs):
                for case in all_cases:
                    if number < max(1, round(jobs * case.share)):
                        run_one(client, r, case, number)
                procs.check_alive()
            if args.profile:
                print(f"{args.profile} profiled jobs per case ...", file=sys.stderr, flush=True)
                worker_pid = next(proc.pid for name, proc in procs.procs if name == "worker")
                os.kill(worker_pid, signal.SIGUSR1)
                # The one-row jobs only, not recorded: the charts of the last case would fill the profile.
                profiled = [Case(c.label, c.kind, c.model, c.params) for c in all_cases if c.share == 1.0]
                for number in range(args.profile):
                    for case in profiled:
                        run_one(client, r, case, jobs + number)
        procs.stop_all()
        profile = worker_profile(profile_file, 30) if args.profile else ""
        publish(table(cmd, all_cases, args, profile), RESULTS, write=not args.no_write)
        return 0
    except KeyboardInterrupt:
        print("interrupted; stopping the subprocesses", file=sys.stderr)
        return 130
    finally:
        stop_after_run(procs, log_dir)


if __name__ == "__main__":
    sys.exit(main())
