"""`glassbox up`: one command for a whole local deployment.

Starts a private redis-server (unless GLASSBOX_REDIS_URL is set), the API and N workers as child
processes, each in its own session so that a terminal's Ctrl-C reaches only the supervisor;
announces the URL once `/readyz` says a client's first job would be accepted; restarts any child
that dies (with backoff); on Ctrl-C or SIGTERM stops the API and the workers together (a running
job goes back to the queue), then Redis, which they need until they are gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.embedded_redis import EmbeddedRedis, EmbeddedRedisError, die_with_parent
from service.settings import Settings

POLL_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
# A warm-stopped worker puts its running job back at the job's next step; uvicorn drains open
# requests (event streams included) within the API's own graceful-shutdown timeout. Both fit
# in this, so that Ctrl-C is done within a few seconds.
STOP_GRACE_SECONDS = 4.0
STILL_WAITING_EVERY_SECONDS = 60.0


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
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
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
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        refusal = self._port_refusal()
        if refusal:
            print(f"glassbox: {refusal}", file=sys.stderr, flush=True)
            return 1
        env = dict(os.environ)
        redis_url = self.settings.redis_url
        if not redis_url:
            self.redis = EmbeddedRedis(Path(self.settings.data_dir) / "redis")
            try:
                self.redis.start(die_with_parent_process=True)
            except EmbeddedRedisError as exc:
                print(f"glassbox: cannot start redis-server: {exc}", file=sys.stderr, flush=True)
                return 1
            redis_url = self.redis.url
            print(f"glassbox: private redis-server at {redis_url} (data in {self.redis.data_dir})", flush=True)
        env["GLASSBOX_REDIS_URL"] = redis_url
        cli = [sys.executable, "-m", "service.cli"]
        api_argv = [*cli, "api", "--host", self.host, "--port", str(self.port), "--supervised"]
        if not self.access_log:
            api_argv.append("--no-access-log")
        self.children = [Child("api", api_argv, env)]
        self.children += [Child(f"worker-{i + 1}", [*cli, "worker"], env) for i in range(self.worker_count)]
        try:
            for child in self.children:
                child.start()
            readiness = ReadinessWatch(self.url)
            while not self.stop_requested:
                self._restart_dead_children()
                if not readiness.announced and readiness.poll():
                    self._announce()
                time.sleep(POLL_SECONDS)
        finally:
            self._stop_all()
        return 0

    def _port_refusal(self) -> str | None:
        """Why the API could not listen on host:port, said now rather than as a restart loop."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return f"cannot listen on {self.host}: {exc.strerror}; pass --host with an address of this machine"
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot listen on {self.host}:{self.port} ({exc.strerror}); stop what uses it or pass --port"
        return None

    def _announce(self) -> None:
        auth = (
            f"on ({len(self.settings.api_keys)} API keys)"
            if self.settings.auth_enabled
            else "OFF (open local mode: set GLASSBOX_API_KEYS to require keys)"
        )
        workers = f"{self.worker_count} worker{'' if self.worker_count == 1 else 's'}"
        print(f"glassbox: open {self.url}/  (API docs {self.url}/docs); {workers}; auth {auth}", flush=True)

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
        """The API and the workers together (neither needs the other to stop), then Redis,
        which the workers need to put a running job back."""
        print("glassbox: stopping", flush=True)
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if not child.wait(max(0.0, deadline - time.monotonic())):
                print(f"glassbox: {child.name} did not stop within {STOP_GRACE_SECONDS:g} s; killing it", flush=True)
                child.signal(signal.SIGKILL)
                child.wait(5)
        if self.redis is not None:
            self.redis.stop()
        print("glassbox: stopped", flush=True)


class ReadinessWatch:
    """Polls `/readyz` until it answers 200. Says what it waits for when that changes (the API
    starting is not worth a line), and again if it stays the same for long."""

    def __init__(self, url: str):
        self.url = url
        self.announced = False
        self.said: str | None = None
        self.said_at = time.monotonic()

    def poll(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            waiting_for = f"Waiting for the API to answer at {self.url}."
        else:
            if response.status_code == 200:
                self.announced = True
                return True
            try:
                waiting_for = response.json().get("detail") or response.text
            except ValueError:
                waiting_for = f"/readyz answers {response.status_code}."
        now = time.monotonic()
        first_word = self.said is None and waiting_for.startswith("Waiting for the API")
        if (waiting_for != self.said and not first_word) or now - self.said_at > STILL_WAITING_EVERY_SECONDS:
            again = "still " if waiting_for == self.said else ""
            print(f"glassbox: not ready yet, {again}{waiting_for[0].lower()}{waiting_for[1:]}", flush=True)
            self.said, self.said_at = waiting_for, now
        return False
