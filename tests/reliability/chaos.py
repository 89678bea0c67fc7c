"""Load with faults against `glassbox up`, and an account of every job it accepted.

A bounded load generator (create with an Idempotency-Key, retried on 503 or a lost connection
honouring Retry-After; poll honouring Retry-After; download every artifact) runs against
`glassbox up --workers N` while a chaos loop SIGKILLs a random worker every few seconds (the
supervisor restarts it) and kills redis-server once (append-only file on), restarting it on the
same port and data directory.

Afterwards every accepted job must be accounted for: `succeeded` with artifacts whose sha256 is
the recorded one *and* the independently expected one (the lifecycle kind's bytes are a function
of the job id; real kinds must give the same bytes as every other job with the same spec), or
`failed` with `worker-lost`. Never missing, never stuck, never anything else.

    uv run python -m tests.reliability.chaos [--workers 3 --duration 60 --clients 8]

writes the counts as markdown (default bench/results/chaos.md). tests/reliability/test_chaos.py
runs a shorter round in CI. This module runs the load and the chaos; the account and its report
are in tests/reliability/chaos_report.py.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from service.embedded_redis import EmbeddedRedis, free_port
from tests.reliability.chaos_report import REPO, TERMINAL, ChaosReport, account

TENANT_KEY = "key-chaos-0123456789"
# Deterministic real jobs: every succeeded job of one spec must carry the same artifact bytes,
# whether or not a worker died under it. JSON artifacts are left out: they carry timings.
REAL_SPECS = {
    "deconvnet": {
        "kind": "deconvnet",
        "model": "shapes-cnn",
        "params": {"layer": "features.6", "dataset": "shapes-val", "top_channels": 2, "top_k": 2},
    },
    "tabular_attribution": {
        "kind": "tabular_attribution",
        "model": "retail-mlp",
        "params": {"dataset": "retail-sample", "indices": [0, 5, 42]},
    },
}


@dataclass
class ChaosConfig:
    workers: int = 3
    duration: float = 60.0  # seconds of load; then no new jobs, and the rest must settle
    clients: int = 8  # each creates a job, follows it to its end, downloads it, and again
    submitters: int = 1  # each creates a job every `submit_every` seconds without waiting for it
    submit_every: float = 1.0
    kill_every: float = 3.0  # mean seconds between worker kills (uniform 0.5x..1.5x)
    redis_restart_at: float = 0.5  # fraction of the duration
    redis_down_seconds: float = 2.0
    real_fraction: float = 0.15  # share of jobs of the real kinds
    settle_seconds: float = 180.0  # after the load: every job must be terminal by then
    seed: int = 0


@dataclass
class Tally:
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> spec name
    create_attempts: int = 0
    create_retries: Counter = field(default_factory=Counter)  # reason -> count
    creates_given_up: int = 0
    poll_retries: Counter = field(default_factory=Counter)
    downloads: int = 0
    download_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ChaosRun:
    tenant_key = TENANT_KEY

    def __init__(self, config: ChaosConfig, work_dir: Path):
        self.config = config
        self.work_dir = work_dir
        self.random = random.Random(config.seed)
        self.redis = EmbeddedRedis(work_dir / "redis", port=free_port())
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.supervisor: subprocess.Popen | None = None
        self.tally = Tally()
        self.stop_load = threading.Event()
        self.stop_chaos = threading.Event()
        self.worker_kills = 0
        self.redis_restarts = 0
        self.redis_down = 0.0

    # ---- processes ---------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GLASSBOX_REDIS_URL": self.redis.url,
            "GLASSBOX_DATA_DIR": str(self.work_dir / "data"),
            "GLASSBOX_NAMESPACE": "chaos",
            "GLASSBOX_PLUGINS": "tests.plugins.lifecycle",
            "GLASSBOX_API_KEYS": f"chaos:{TENANT_KEY}",
            "GLASSBOX_WORKER_HEARTBEAT_SECONDS": "0.5",
            "GLASSBOX_WORKER_LOST_AFTER_SECONDS": "3",
            "GLASSBOX_REAPER_INTERVAL_SECONDS": "0.5",
            "GLASSBOX_DEVICE": "cpu",
            "GLASSBOX_MAX_CONCURRENT_JOBS_PER_TENANT": str(max(4, self.config.workers)),
            "OMP_NUM_THREADS": "1",
        }
        log = open(self.work_dir / "glassbox-up.log", "wb")
        self.supervisor = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "up", "--port", str(self.port),
             "--workers", str(self.config.workers), "--no-access-log"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        connection = redis.Redis.from_url(self.redis.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.supervisor.poll() is not None:
                raise RuntimeError(f"glassbox up exited: {self.log_tail()}")
            if connection.zcount("chaos:workers", time.time() - 3, "+inf") >= self.config.workers:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within 120 s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.work_dir / "glassbox-up.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.supervisor.pid, signal.SIGKILL)
                self.supervisor.wait()
        self.redis.stop()

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.supervisor.pid and b"worker" in argv:
                pids.append(int(entry.name))
        return pids

    # ---- chaos -------------------------------------------------------------------------

    def chaos_loop(self) -> None:
        started = time.monotonic()
        redis_at = self.config.duration * self.config.redis_restart_at
        while not self.stop_chaos.is_set():
            if self.stop_chaos.wait(self.config.kill_every * self.random.uniform(0.5, 1.5)):
                break
            pids = self.worker_pids()
            if pids:
                try:
                    os.kill(self.random.choice(pids), signal.SIGKILL)
                    self.worker_kills += 1
                except ProcessLookupError:
                    pass
            if not self.redis_restarts and time.monotonic() - started >= redis_at:
                self.restart_redis()

    def restart_redis(self) -> None:
        # SIGKILL, not SHUTDOWN: only what the append-only file already holds survives.
        down = time.monotonic()
        self.redis.process.kill()
        self.redis.process.wait()
        time.sleep(self.config.redis_down_seconds)
        self.redis.start(timeout=30)
        self.redis_down = time.monotonic() - down
        self.redis_restarts += 1

    # ---- load --------------------------------------------------------------------------

    def choose_spec(self, rng: random.Random) -> tuple[str, dict]:
        if rng.random() < self.config.real_fraction:
            name = rng.choice(sorted(REAL_SPECS))
            return name, REAL_SPECS[name]
        params = {
            "steps": rng.randint(1, 40),
            "step_seconds": 0.05,
            "artifact_bytes": rng.choice([0, 1, 4096, 300_000]),
        }
        return "lifecycle", {"kind": "test-lifecycle", "model": "test-model", "params": params}

    def client_loop(self, index: int) -> None:
        rng = random.Random(f"{self.config.seed}:{index}")
        with self.tenant_client(timeout=15) as client:
            while not self.stop_load.is_set():
                name, spec = self.choose_spec(rng)
                job_id = self.create(client, spec)
                if job_id is None:
                    continue
                with self.tally.lock:
                    self.tally.accepted[job_id] = name
                self.follow(client, job_id)

    def submitter_loop(self, index: int) -> None:
        """Creates keep coming while Redis is down: each one must still be accepted exactly once."""
        rng = random.Random(f"{self.config.seed}:submitter:{index}")
        with self.tenant_client(timeout=15) as client:
            while not self.stop_load.wait(self.config.submit_every):
                name, spec = self.choose_spec(rng)
                job_id = self.create(client, spec)
                if job_id is not None:
                    with self.tally.lock:
                        self.tally.accepted[job_id] = name

    def create(self, client: httpx.Client, spec: dict) -> str | None:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.tally.lock:
                self.tally.create_attempts += 1
            try:
                response = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                self._retried(self.tally.create_retries, type(exc).__name__)
                time.sleep(0.5)
                continue
            if response.status_code in (200, 201, 202):
                return response.json()["id"]
            if response.status_code == 503:
                self._retried(self.tally.create_retries, "503")
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            raise AssertionError(f"create refused: {response.status_code} {response.text[:300]}")
        with self.tally.lock:
            self.tally.creates_given_up += 1
        return None

    def follow(self, client: httpx.Client, job_id: str) -> None:
        """Poll until the job ends (honouring Retry-After), then fetch its artifacts once."""
        deadline = time.monotonic() + self.config.duration + self.config.settle_seconds
        while time.monotonic() < deadline:
            try:
                response = client.get(f"/v1/jobs/{job_id}")
            except httpx.TransportError as exc:
                self._retried(self.tally.poll_retries, type(exc).__name__)
                time.sleep(0.5)
                continue
            if response.status_code == 200 and response.json()["status"] in TERMINAL:
                for artifact in (response.json().get("result") or {}).get("artifacts", []):
                    self.download(client, artifact["url"])
                return
            if response.status_code not in (200, 503):
                return  # accounted for (as missing) at the end
            if response.status_code == 503:
                self._retried(self.tally.poll_retries, "503")
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def download(self, client: httpx.Client, url: str) -> bytes | None:
        for _ in range(30):
            try:
                response = client.get(url)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if response.status_code == 200:
                with self.tally.lock:
                    self.tally.downloads += 1
                    self.tally.download_bytes += len(response.content)
                return response.content
            if response.status_code != 503:
                return None
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return None

    def tenant_client(self, timeout: float) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {TENANT_KEY}"}, timeout=timeout)

    def _retried(self, counter: Counter, reason: str) -> None:
        with self.tally.lock:
            counter[reason] += 1

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> ChaosReport:
        began = time.monotonic()
        self.start()
        try:
            clients = [
                threading.Thread(target=self.client_loop, args=(i,), daemon=True) for i in range(self.config.clients)
            ]
            clients += [
                threading.Thread(target=self.submitter_loop, args=(i,), daemon=True)
                for i in range(self.config.submitters)
            ]
            chaos = threading.Thread(target=self.chaos_loop, daemon=True)
            for thread in [*clients, chaos]:
                thread.start()
            time.sleep(self.config.duration)
            self.stop_load.set()
            self.stop_chaos.set()
            chaos.join()
            if not self.redis_restarts:
                self.restart_redis()
            settle_began = time.monotonic()
            for thread in clients:
                thread.join(self.config.settle_seconds)
            return account(self, began, settle_began)
        finally:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ChaosConfig()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "chaos.md"))
    args = parser.parse_args(argv)
    config = ChaosConfig(**{k: v for k, v in vars(args).items() if k != "out"})
    with tempfile.TemporaryDirectory(prefix="glassbox-chaos-") as work_dir:
        report = ChaosRun(config, Path(work_dir)).run()
    command = "uv run python -m tests.reliability.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report.markdown(command.strip())
    Path(args.out).write_text(text)
    print(text)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
