"""The subprocesses a benchmark starts (redis-server, the API, workers, the bare app): free
ports, a group that is always stopped (TERM, then KILL), and waiting for an HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.httpload import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent


def end_on_signals() -> None:
    """SIGINT (even where it was inherited as ignored), SIGTERM and SIGHUP end the run as Ctrl-C
    does, so that the caller's `finally` stops the subprocesses."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)


def stop_after_run(procs: Processes, log_dir: Path, *, remove_logs: bool = False) -> None:
    """The `finally` of a run that called end_on_signals: further signals are ignored while the
    subprocesses stop; then their logs are removed (`remove_logs`) or their folder is named."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs.stop_all()
    if remove_logs:
        for path in log_dir.iterdir():
            path.unlink()
        log_dir.rmdir()
    else:
        print(f"subprocess logs: {log_dir}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Subprocesses in their own sessions; all stopped by stop_all (TERM, then KILL)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.service_env: dict[str, str] = {}  # start_service's environment, for more workers

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process has used so far, by name (httpload.cpu_seconds)."""
        return {name: cpu_seconds(proc.pid) for name, proc in self.procs}

    def signal_workers(self, signum: int) -> None:
        """Send `signum` to every worker's process group (SIGSTOP/SIGCONT to pause them)."""
        for name, proc in self.procs:
            if name.startswith("worker") and proc.poll() is None:
                os.killpg(proc.pid, signum)

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()


def wait_http(url: str, procs: Processes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_service(
    procs: Processes,
    device: str,
    *,
    ready_within: float = 180.0,
    env: dict[str, str] | None = None,
    worker_module: tuple[str, ...] = ("service.cli", "worker"),
) -> str:
    """A redis-server, an API and one worker on free ports, with their data in the benchmark's
    folder and `env` added to their environment (kept as procs.service_env, for more workers);
    returns the API's URL once /readyz says the built-in models are registered.
    `worker_module`: the worker's `python -m` module and arguments (bench/profiled_worker.py)."""
    redis_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "GLASSBOX_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GLASSBOX_DEVICE": device,
        "GLASSBOX_DATA_DIR": str(procs.log_dir / "data"),
        **(env or {}),
    }
    procs.service_env = env
    procs.start("redis", ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"], env)
    procs.start("api", [sys.executable, "-m", "service.cli", "api", "--port", str(api_port), "--no-access-log"], env)
    procs.start("worker", [sys.executable, "-m", *worker_module], env)
    base = f"http://127.0.0.1:{api_port}"
    wait_http(f"{base}/livez", procs)
    deadline = time.monotonic() + ready_within
    while httpx.get(f"{base}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not become ready; logs in {procs.log_dir}")
        procs.check_alive()
        time.sleep(0.2)
    return base
