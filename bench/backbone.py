"""Benchmark of the job backbone: API reads, create-to-running latency, per-job overhead.

Run from the repository root:

    .venv/bin/python -m bench.backbone [--quick]

It starts its own redis-server (a free port, no persistence), the API (`glassbox api`), one
worker (`glassbox worker`) and a bare FastAPI app (bench/bare_app.py, the baseline for the
read load), all as subprocesses that are stopped at exit. It prints a markdown table to stdout
and writes it to bench/results/backbone.md.

Figures:
  1. `GET /v1/jobs/{id}` of a finished job under 16 concurrent keep-alive clients, alternated
     with the same load against the bare app: median, p99, requests/s, and the ratio.
  2. Create-to-running of an idle worker: `started_at - created_at` (server timestamps) over
     sequential one-step jobs, each created after the previous one finished.
  3. Per-job overhead of a 0-step job: POST to `succeeded` observed by the client (polling GET
     as fast as it can, and following the SSE stream), the worker-side `finished_at -
     started_at`, and the throughput of a burst of jobs submitted at once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench import results_dir
from bench.httpload import LoadResult, cpu_seconds, percentile, raw_request, run_load
from bench.jobclient import MODEL, create_job, job_body, record, submit_jobs, wait_all_terminal, wait_terminal
from bench.processes import ROOT, Processes, end_on_signals, free_port, stop_after_run, wait_http
from service.catalogs import ModelCatalog
from service.settings import Settings

RESULTS = results_dir() / "backbone.md"
BIN = Path(sys.executable).parent


# ---- formatting --------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# ---- the measurements (1. read load, 2. create-to-running, 3. per-job overhead) -------


def read_load(api: tuple[int, int], bare: tuple[int, int], job_id: str, clients: int, seconds: float, rounds: int) -> dict:
    """`api` and `bare` are (port, pid) of the two servers."""
    path = f"/v1/jobs/{job_id}"
    requests = {port: [raw_request("GET", path, port)] for port, _ in (bare, api)}
    results = {"bare": LoadResult(), "status": LoadResult()}
    servers = {"bare": bare, "status": api}
    for port, _ in (bare, api):  # warm-up of both servers
        run_load(port, requests[port], clients, 0.5)
    for _ in range(rounds):  # alternated, so that machine noise hits both
        for name in ("bare", "status"):
            port, pid = servers[name]
            cpu_before = cpu_seconds(pid)
            r = run_load(port, requests[port], clients, seconds)
            target = results[name]
            target.server_cpu += cpu_seconds(pid) - cpu_before
            target.latencies += r.latencies
            target.elapsed += r.elapsed
            target.errors += r.errors
    return results


def create_to_running(client: httpx.Client, r: redis.Redis, n: int) -> dict:
    deltas, runs = [], []
    for _ in range(n):
        time.sleep(0.05)  # the worker is idle, blocked in its dequeue
        rec = wait_terminal(r, create_job(client, job_body(steps=1)))
        if rec["status"] != "succeeded":
            raise RuntimeError(f"job failed: {rec}")
        deltas.append(float(rec["started_at"]) - float(rec["created_at"]))
        runs.append(float(rec["finished_at"]) - float(rec["started_at"]))
    return {"created_to_started": deltas, "started_to_finished": runs}


def overhead_polling(client: httpx.Client, r: redis.Redis, n: int) -> dict:
    walls, post, c2s, s2f, f2seen = [], [], [], [], []
    for _ in range(n):
        time.sleep(0.05)
        t0 = time.perf_counter()
        response = client.post("/v1/jobs", json=job_body(steps=0))
        t_post = time.perf_counter()
        job_id = response.json()["id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                break
        t1 = time.perf_counter()
        w1 = time.time()
        if job["status"] != "succeeded":
            raise RuntimeError(f"job failed: {job}")
        rec = record(r, job_id)
        walls.append(t1 - t0)
        post.append(t_post - t0)
        c2s.append(float(rec["started_at"]) - float(rec["created_at"]))
        s2f.append(float(rec["finished_at"]) - float(rec["started_at"]))
        f2seen.append(w1 - float(rec["finished_at"]))
    return {"wall": walls, "post": post, "created_to_started": c2s, "started_to_finished": s2f, "finished_to_seen": f2seen}


def overhead_sse(client: httpx.Client, r: redis.Redis, n: int) -> dict:
    walls, f2seen = [], []
    for _ in range(n):
        time.sleep(0.05)
        t0 = time.perf_counter()
        job_id = create_job(client, job_body(steps=0))
        final = None
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}) as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "status":
                    status = json.loads(line[6:])["status"]
                    if status in ("succeeded", "failed", "canceled"):
                        final = status
                        break
        t1 = time.perf_counter()
        w1 = time.time()
        if final != "succeeded":
            raise RuntimeError(f"job {job_id} ended {final}")
        rec = record(r, job_id)
        walls.append(t1 - t0)
        f2seen.append(w1 - float(rec["finished_at"]))
    return {"wall": walls, "finished_to_seen": f2seen}


def burst(base_url: str, r: redis.Redis, n: int) -> dict:
    time.sleep(0.2)
    w0 = time.time()
    ids = submit_jobs(base_url, job_body(steps=0), n)
    submitted = time.time() - w0
    rows = wait_all_terminal(r, ids, timeout=120)
    failed = sum(row[0] != b"succeeded" for row in rows)
    last_finished = max(float(row[1]) for row in rows)
    total = last_finished - w0
    return {"n": n, "submit_s": submitted, "total_s": total, "failed": failed}


# ---- main ----------------------------------------------------------------------------------


def build_table(cmd: str, env_info: str, load: dict, c2r: dict, poll: dict, sse: dict, bur: dict, cfg: dict) -> str:
    bare, status = load["bare"], load["status"]
    ratio = status.rps / bare.rps if bare.rps else float("nan")
    c2s = c2r["created_to_started"]
    poll_wall = statistics.median(poll["wall"])
    sse_wall = statistics.median(sse["wall"])
    per_job = bur["total_s"] / bur["n"]

    def ok(good: bool) -> str:
        return "yes" if good else "**no**"

    rows = [
        ("Metric", "Value", "Goal", "Met"),
        (f"1. bare FastAPI GET, {cfg['clients']} clients: median / p99",
         f"{ms(statistics.median(bare.latencies))} / {ms(percentile(bare.latencies, 99))}", "", ""),
        (f"1. `GET /v1/jobs/{{id}}`, {cfg['clients']} clients: median / p99",
         f"{ms(statistics.median(status.latencies))} / {ms(percentile(status.latencies, 99))}", "", ""),
        ("1. requests/s: status GET / bare",
         f"{status.rps:.0f} / {bare.rps:.0f} ({len(status.latencies)} / {len(bare.latencies)} requests, "
         f"{status.errors + bare.errors} non-200)", "", ""),
        ("1. server process CPU per request: status GET / bare",
         f"{status.cpu_per_request * 1e6:.0f} us / {bare.cpu_per_request * 1e6:.0f} us "
         f"(server busy {status.server_cpu / status.elapsed:.0%} / {bare.server_cpu / bare.elapsed:.0%} of a core)", "", ""),
        ("1. throughput ratio status GET / bare", f"{ratio:.2f}", ">= 0.5", ok(ratio >= 0.5)),
        (f"2. create-to-running, idle worker ({len(c2s)} jobs): median / p90",
         f"{ms(statistics.median(c2s))} / {ms(percentile(c2s, 90))}", "< 50 ms median",
         ok(statistics.median(c2s) < 0.050)),
        ("2. same jobs, started-to-finished (1 step of 0 s): median",
         ms(statistics.median(c2r["started_to_finished"])), "", ""),
        (f"3. 0-step job, POST to `succeeded` seen by polling GET ({len(poll['wall'])} jobs): median / p90",
         f"{ms(poll_wall)} / {ms(percentile(poll['wall'], 90))}", "< 30 ms", ok(poll_wall < 0.030)),
        ("3. ... of which POST response / created-to-started / started-to-finished / finished-to-seen (medians)",
         " / ".join(ms(statistics.median(poll[k])) for k in ("post", "created_to_started", "started_to_finished", "finished_to_seen")),
         "", ""),
        (f"3. 0-step job, POST to `succeeded` seen on the SSE stream ({len(sse['wall'])} jobs): median / p90",
         f"{ms(sse_wall)} / {ms(percentile(sse['wall'], 90))}", "< 30 ms", ok(sse_wall < 0.030)),
        ("3. SSE: finished_at to the status event received (median)", ms(statistics.median(sse["finished_to_seen"])), "", ""),
        (f"3. burst of {bur['n']} 0-step jobs submitted at once: time until all succeeded",
         f"{bur['total_s']:.2f} s (submitting took {bur['submit_s']:.2f} s; {bur['failed']} not succeeded)", "", ""),
        ("3. burst throughput", f"{bur['n'] / bur['total_s']:.1f} jobs/s = {per_job * 1000:.1f} ms/job", "< 30 ms/job",
         ok(per_job < 0.030)),
    ]
    lines = [f"| {' | '.join(rows[0])} |", "|" + "---|" * len(rows[0])]
    lines += [f"| {' | '.join(r)} |" for r in rows[1:]]
    header = [
        "# Glassbox backbone benchmark",
        "",
        f"Command: `{cmd}`",
        "",
        env_info,
        "",
    ]
    return "\n".join(header + lines) + "\n"


def environment_info(cfg: dict) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {commit}{' + uncommitted changes' if dirty else ''}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}. "
        f"One redis-server, one API process, one worker, the bare app and this client all share the machine. "
        f"Read load: {cfg['clients']} keep-alive connections, {cfg['rounds']} x {cfg['seconds']:g} s per target, "
        f"alternated bare/status. Settings are the defaults (GLASSBOX_LOG_LEVEL={cfg['log_level']}, "
        f"max 4 concurrent jobs per tenant, progress interval 0.25 s)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backbone", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the read load (16)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="GLASSBOX_LOG_LEVEL of the API and the worker (default info, the service default)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the subprocess logs and print where")
    args = parser.parse_args(argv)
    cfg = {
        "clients": args.clients,
        "seconds": 1.0 if args.quick else 3.0,
        "rounds": 2,
        "sequential": 15 if args.quick else 50,
        "burst": 50 if args.quick else 200,
        "log_level": args.log_level,
    }
    cmd = shlex.join([".venv/bin/python", "-m", "bench.backbone", *(argv if argv is not None else sys.argv[1:])])
    print(f"$ {cmd}\n", flush=True)

    end_on_signals()

    log_dir = Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
    procs = Processes(log_dir)
    ok = False
    try:
        redis_port, api_port, bare_port = free_port(), free_port(), free_port()
        procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(log_dir)], dict(os.environ))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        r = redis.Redis.from_url(redis_url)
        for _ in range(200):
            procs.check_alive()
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
        env.update(
            GLASSBOX_REDIS_URL=redis_url,
            GLASSBOX_PLUGINS="tests.plugins.lifecycle",
            GLASSBOX_LOG_LEVEL=args.log_level,
            GLASSBOX_DEVICE="cpu",
            PYTHONPATH=str(ROOT),
        )
        settings = Settings(redis_url=redis_url)
        ModelCatalog(r, settings).put("builtin", MODEL, {"id": MODEL})
        api = procs.start("api", [str(BIN / "glassbox"), "api", "--port", str(api_port), "--no-access-log"], env)
        procs.start("worker", [str(BIN / "glassbox"), "worker"], env)
        bare = procs.start("bare", [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port),
                             "--no-access-log"], env)
        base = f"http://127.0.0.1:{api_port}"
        wait_http(f"{base}/livez", procs)
        wait_http(f"http://127.0.0.1:{bare_port}/v1/jobs/x", procs)
        deadline = time.monotonic() + 30
        while not r.zcard("glassbox:workers"):
            procs.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not register")
            time.sleep(0.05)

        with httpx.Client(base_url=base, timeout=30) as client:
            # Warm-up: imports of the handler, connection pools, RQ's first dequeue.
            for _ in range(5):
                wait_terminal(r, create_job(client, job_body(steps=1)))
            finished_id = create_job(client, job_body(steps=0))
            wait_terminal(r, finished_id)

            print(f"1/4 read load ({cfg['rounds']} x {cfg['seconds']:g} s per target)...", file=sys.stderr, flush=True)
            load = read_load((api_port, api.pid), (bare_port, bare.pid), finished_id, cfg["clients"], cfg["seconds"], cfg["rounds"])
            procs.check_alive()
            print(f"2/4 create-to-running ({cfg['sequential']} jobs)...", file=sys.stderr, flush=True)
            c2r = create_to_running(client, r, cfg["sequential"])
            print(f"3/4 per-job overhead ({cfg['sequential']} polled, {cfg['sequential']} SSE)...", file=sys.stderr, flush=True)
            poll = overhead_polling(client, r, cfg["sequential"])
            sse = overhead_sse(client, r, cfg["sequential"])
        print(f"4/4 burst of {cfg['burst']} jobs...", file=sys.stderr, flush=True)
        bur = burst(base, r, cfg["burst"])
        procs.check_alive()

        table = build_table(cmd, environment_info(cfg), load, c2r, poll, sse, bur, cfg)
        print(table)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(table)
        print(f"(written to {RESULTS.relative_to(ROOT)})", file=sys.stderr)
        ok = True
        return 0
    except KeyboardInterrupt:
        print("interrupted; stopping the subprocesses", file=sys.stderr)
        return 130
    finally:
        stop_after_run(procs, log_dir, remove_logs=ok and not args.keep_logs)


if __name__ == "__main__":
    sys.exit(main())
