"""`glassbox up`: one command for a whole local deployment.

Starts a private redis-server (unless GLASSBOX_REDIS_URL is set), the API and N workers as child
processes; restarts any child that dies (with backoff); on Ctrl-C or SIGTERM stops the workers
first (a running job goes back to the queue), then the API, then Redis.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.embedded_redis import EmbeddedRedis
from service.settings import Settings

POLL_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
WORKER_STOP_GRACE_SECONDS = 15.0
API_STOP_GRACE_SECONDS = 10.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, so nothing is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    failures_in_row: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            # Own session: a terminal's Ctrl-C reaches only the supervisor, which then stops
            # each child exactly once, in order.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


class Supervisor:
    def __init__(self, settings: Settings, *, host: str, port: int, workers: int, access_log: bool = True):
        self.settings = settings
        self.host = host
        self.port = port
        self.worker_count = workers
        self.access_log = access_log
        self.stop_requested = False
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        env = dict(os.environ)
        redis_url = self.settings.redis_url
        if not redis_url:
            self.redis = EmbeddedRedis(Path(self.settings.data_dir) / "redis")
            self.redis.start()
            redis_url = self.redis.url
            print(f"glassbox: private redis-server at {redis_url} (data in {self.redis.data_dir})", flush=True)
        env["GLASSBOX_REDIS_URL"] = redis_url
        cli = [sys.executable, "-m", "service.cli"]
        api_argv = [*cli, "api", "--host", self.host, "--port", str(self.port)]
        if not self.access_log:
            api_argv.append("--no-access-log")
        self.children = [Child("api", api_argv, env)]
        self.children += [Child(f"worker-{i + 1}", [*cli, "worker"], env) for i in range(self.worker_count)]
        try:
            for child in self.children:
                child.start()
            self._announce()
            while not self.stop_requested:
                self._restart_dead_children()
                time.sleep(POLL_SECONDS)
        finally:
            self._stop_all()
        return 0

    def _announce(self) -> None:
        url = f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.stop_requested:
            try:
                if httpx.get(f"{url}/livez", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = (
            f"on ({len(self.settings.api_keys)} API keys)"
            if self.settings.auth_enabled
            else "OFF (open local mode: set GLASSBOX_API_KEYS to require keys)"
        )
        print(f"glassbox: open {url}/  (API docs {url}/docs); {self.worker_count} workers; auth {auth}", flush=True)

    def _restart_dead_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.alive:
                if child.failures_in_row and now - child.started_at > HEALTHY_AFTER_SECONDS:
                    child.failures_in_row = 0
                continue
            if child.next_start == 0.0:
                code = child.process.returncode if child.process else None
                child.failures_in_row += 1
                delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (child.failures_in_row - 1))
                child.next_start = now + delay
                print(f"glassbox: {child.name} exited ({code}); restarting in {delay:.1f} s", flush=True)
            elif now >= child.next_start:
                child.next_start = 0.0
                child.start()

    def _stop_all(self) -> None:
        print("glassbox: stopping", flush=True)
        workers = [c for c in self.children if c.name.startswith("worker")]
        api = [c for c in self.children if c.name == "api"]
        for group, grace in ((workers, WORKER_STOP_GRACE_SECONDS), (api, API_STOP_GRACE_SECONDS)):
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                if not child.wait(max(0.0, deadline - time.monotonic())):
                    child.signal(signal.SIGKILL)
                    child.wait(5)
        if self.redis is not None:
            self.redis.stop()
        print("glassbox: stopped", flush=True)
