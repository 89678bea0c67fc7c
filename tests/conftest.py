"""Real components for the tests: a private redis-server, the API and workers as processes.

Nothing here touches a Redis the tests did not start, unless GLASSBOX_TEST_REDIS_URL names one
(then each stack still works in its own key namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.embedded_redis import free_port
from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TEST_MODEL = "test-model"
ALICE, BOB = "key-alice-0123456789", "key-bob-0123456789"
TEST_KINDS_PLUGIN = "tests.plugins.lifecycle"
SESSION_DATA_DIR = tempfile.mkdtemp(prefix="glassbox-test-data-")


class RedisProcess:
    """A redis-server the tests own: can be stopped and started again on the same port."""

    def __init__(self, directory: Path, *, appendonly: bool = False):
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or _packaged_redis(),
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _packaged_redis() -> str:
    from service.embedded_redis import find_redis_server

    return find_redis_server()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    external = os.environ.get("GLASSBOX_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


class Stack:
    """An API process and worker processes on one namespace, plus an HTTP client per tenant."""

    def __init__(self, redis_url: str, log_dir: Path, **settings: Any):
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        env = {
            "GLASSBOX_REDIS_URL": redis_url,
            "GLASSBOX_NAMESPACE": self.namespace,
            "GLASSBOX_PLUGINS": TEST_KINDS_PLUGIN,
            "GLASSBOX_API_KEYS": f"alice:{ALICE},bob:{BOB}",
            "GLASSBOX_WORKER_HEARTBEAT_SECONDS": "0.5",
            "GLASSBOX_WORKER_LOST_AFTER_SECONDS": "3",
            "GLASSBOX_REAPER_INTERVAL_SECONDS": "0.5",
            "GLASSBOX_PROGRESS_INTERVAL_SECONDS": "0.1",
            "GLASSBOX_DEVICE": "cpu",
            # Blobs and caches in the session's own folder, never a user's .glassbox (blob keys
            # are unique per job or upload, so stacks can share it, and its torchvision catalog
            # cache spares every worker after the first an import of torchvision).
            "GLASSBOX_DATA_DIR": SESSION_DATA_DIR,
        }
        env.update({f"GLASSBOX_{k.upper()}": str(v) for k, v in settings.items()})
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.settings = Settings(**{k.removeprefix("GLASSBOX_").lower(): v for k, v in env.items() if k != "GLASSBOX_API_KEYS" and k != "GLASSBOX_PLUGINS"})
        self.redis = redis.Redis.from_url(redis_url)
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{self.namespace}-{name}.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args], env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def start_api(self) -> None:
        self.api = self._spawn("api", "api", "--port", str(self.port), "--no-access-log")
        wait_until(self._live, timeout=60, what="the API to start")

    def _live(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, wait: bool = True) -> subprocess.Popen:
        process = self._spawn(f"worker{len(self.workers)}", "worker")
        self.workers.append(process)
        if wait:
            before = len(self.live_workers())
            wait_until(lambda: len(self.live_workers()) > before, timeout=120, what="the worker to beat")
        return process

    def blob_store(self):
        """The stack's blob store, as its processes open it."""
        from service.storage import open_blob_store

        return open_blob_store(self.settings)

    def running_step(self, job_id: str, kind: str) -> tuple[str, int] | None:
        """A running step of `kind` of a fanned-out job, and the pid of the worker running it."""
        fanout = self.redis.hget(f"{self.namespace}:job:{job_id}", "fanout")
        for step in json.loads(fanout)["shards"] if fanout else []:
            found, status, worker = self.redis.hmget(f"{self.namespace}:job:{step}", "kind", "status", "worker")
            if found == kind.encode() and status == b"running":
                return step, int(worker.decode().split(".")[-2])  # worker names are host.pid.tag
        return None

    def live_workers(self) -> list[str]:
        since = time.time() - self.settings.worker_lost_after_seconds
        return [w.decode() for w in self.redis.zrangebyscore(f"{self.namespace}:workers", since, "+inf")]

    def client(self, key: str | None = ALICE) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def create(self, client: httpx.Client, params: dict | None = None, **body: Any) -> dict:
        payload = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": params or {}, **body}
        response = client.post("/v1/jobs", json=payload)
        assert response.status_code == 202, response.text
        return response.json()

    def wait_status(self, client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30) -> dict:
        def done() -> dict | None:
            job = client.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in statuses else None

        return wait_until(done, timeout=timeout, what=f"job {job_id} to be {statuses}", interval=0.02)

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)


@pytest.fixture(scope="module")
def two_workers(redis_url, tmp_path_factory) -> Iterator[Stack]:
    """An API and two workers shared by one test module (fan-outs: index builds, atlases)."""
    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"))
    stack.start_api()
    for _ in range(2):
        stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture
def make_stack(redis_url, tmp_path_factory) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []
    log_dir = tmp_path_factory.mktemp("logs")

    def make(*, workers: int = 1, api: bool = True, url: str | None = None, **settings: Any) -> Stack:
        stack = Stack(url or redis_url, log_dir, **settings)
        stacks.append(stack)
        if api:
            stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@contextmanager
def started_stack(redis_url: str, tmp_path_factory, *, env: dict[str, str] | None = None, **settings: Any) -> Iterator[Stack]:
    """An API and one worker (with `settings` as GLASSBOX_* and `env` on top), stopped after."""
    stack = Stack(redis_url, tmp_path_factory.mktemp("logs"), **settings)
    stack.env.update(env or {})
    stack.start_api()
    stack.start_worker()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory) -> Iterator[Stack]:
    """A shared API with one worker, for tests that do not disturb it."""
    with started_stack(redis_url, tmp_path_factory, max_request_bytes=65536) as shared:
        yield shared


# ---- tiers -------------------------------------------------------------------------------
# The fast tier (`pytest -m "not slow"`) is everything in this process: tests/service (the job
# store, the API on ASGITransport, the blob store) and tests/worker (the core, the models). The
# slow tier, tests/e2e, tests/reliability and tests/web and any test on a `stack`, starts API,
# worker and redis processes (or `glassbox up`, or a browser); CI runs both.
SLOW_FIXTURES = {"stack", "make_stack", "web_stack", "tab"}
SLOW_FOLDERS = {"reliability", "web", "e2e"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        folders = set(Path(str(item.fspath)).relative_to(REPO / "tests").parts[:-1])
        fixtures = set(getattr(item, "fixturenames", ()))
        if folders & SLOW_FOLDERS or SLOW_FIXTURES & fixtures or any(name.endswith("_stack") for name in fixtures):
            item.add_marker(pytest.mark.slow)
