"""A new user's first minutes: `glassbox up` says its URL only once the README's first job is
accepted, `/readyz` says what it waits for, and Ctrl-C stops everything quickly, in order, quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.embedded_redis import free_port
from tests.conftest import ALICE, REPO, TEST_MODEL, wait_until

# The README's first curl, verbatim.
README_FIRST_JOB = {
    "kind": "deconvnet",
    "model": "shapes-cnn",
    "params": {"layer": "features.6", "dataset": "shapes-val", "top_channels": 4, "top_k": 6},
    "metadata": {"run": "demo"},
}
# What the issue asks of Ctrl-C.
STOP_WITHIN_SECONDS = 5.0


class UpProcess:
    """`glassbox up` in its own session, as a terminal runs it, its output read line by line."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
        env.update(
            GLASSBOX_DATA_DIR=str(tmp_path / "data"),
            GLASSBOX_DEVICE="cpu",
            GLASSBOX_PLUGINS="tests.plugins.lifecycle",
            PYTHONPATH=str(REPO),
        )
        self.lines: list[str] = []
        self.first_job: httpx.Response | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "up", "--port", str(self.port), "--no-access-log"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if "glassbox: open " in line and self.first_job is None:
                # At the very moment the URL is printed, before anything else is read.
                self.first_job = httpx.post(f"{self.base}/v1/jobs", json=README_FIRST_JOB, timeout=30)
            self.lines.append(line.rstrip("\n"))

    def output(self, since: int = 0) -> str:
        return "\n".join(self.lines[since:])

    def children(self) -> dict[str, int]:
        found = {}
        for pid in map(int, subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()):
            command = _command_line(pid)
            name = "redis" if "redis-server" in command else "api" if " api " in command else "worker"
            found[name] = pid
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped by the supervisor counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.timeout(240)
def test_up_says_its_url_only_when_the_readme_first_job_is_accepted(tmp_path):
    up = UpProcess(tmp_path)
    try:
        wait_until(lambda: up.first_job is not None or up.process.poll() is not None, timeout=180,
                   what="glassbox up to print its URL")  # fmt: skip
        assert up.first_job is not None, up.output()
        assert up.first_job.status_code == 202, up.first_job.text
        assert up.first_job.json()["model"] == "shapes-cnn"
        banner = next(line for line in up.lines if "glassbox: open " in line)
        assert "; 1 worker;" in banner, banner
        # What it waited for was said once, in `up`'s own words.
        waiting = [line for line in up.lines if "not ready yet" in line]
        assert len(waiting) == 1, up.output()
        assert "`glassbox up` is starting it" in waiting[0] and "glassbox worker`" not in waiting[0]
        assert up.lines.index(waiting[0]) < up.lines.index(banner)
    finally:
        up.kill()


@pytest.mark.timeout(240)
def test_ctrl_c_stops_api_and_worker_then_redis_quickly_and_quietly(tmp_path):
    up = UpProcess(tmp_path)
    try:
        with httpx.Client(base_url=up.base, timeout=30) as client:
            wait_until(lambda: _ready(client), timeout=180, what="glassbox up to be ready")
            # Ctrl-C while a job runs and a client follows its event stream.
            job = client.post("/v1/jobs", json={"kind": "test-lifecycle", "model": TEST_MODEL,
                                                "params": {"steps": 100_000, "step_seconds": 0.05}}).json()  # fmt: skip
            wait_until(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running", timeout=120,
                       what="the long job to run")  # fmt: skip
        stream = threading.Thread(target=_follow, args=(f"{up.base}/v1/jobs/{job['id']}/events",), daemon=True)
        stream.start()
        children = up.children()
        assert set(children) == {"api", "worker", "redis"}, children
        time.sleep(0.5)  # the stream is open
        before = len(up.lines)
        sent = time.monotonic()
        os.killpg(up.process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        exited: dict[str, float] = {}
        while len(exited) < len(children) and time.monotonic() - sent < 30:
            for name, pid in children.items():
                if name not in exited and _gone(pid):
                    exited[name] = time.monotonic() - sent
            time.sleep(0.005)
        assert up.process.wait(30) == 0
        took = time.monotonic() - sent
        up.reader.join(5)
        said = up.output(before)
        assert exited["redis"] >= max(exited["api"], exited["worker"]), (exited, said)
        assert took < STOP_WITHIN_SECONDS, (took, exited, said)
        assert "ERROR" not in said and "Traceback" not in said and "Error" not in said, said
        assert said.rstrip().endswith("glassbox: stopped"), said
    finally:
        up.kill()


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _follow(url: str) -> None:
    try:
        with httpx.stream("GET", url, timeout=60) as response:
            for _ in response.iter_lines():
                pass
    except httpx.HTTPError:
        pass


def test_readyz_says_what_it_waits_for_under_separate_roles(make_stack):
    stack = make_stack(workers=0)
    waiting = httpx.get(f"{stack.base_url}/readyz")
    assert waiting.status_code == 503 and int(waiting.headers["Retry-After"]) > 0
    assert waiting.headers["content-type"].startswith("application/problem+json")
    detail = waiting.json()["detail"]
    assert detail.startswith("Waiting for a worker") and "Start `glassbox worker`" in detail
    assert "GLASSBOX_REDIS_URL" in detail and "glassbox up" not in detail

    stack.start_worker()
    ready = httpx.get(f"{stack.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "redis": "ok", "workers": 1, "builtins": "registered"}
    with stack.client(ALICE) as client:
        assert client.post("/v1/jobs", json=README_FIRST_JOB).status_code == 202

    # A live worker is not enough: the catalog a worker registers must be there too.
    stack.redis.hdel(f"{stack.namespace}:datasets:builtin", "shapes-val")
    missing = httpx.get(f"{stack.base_url}/readyz")
    assert missing.status_code == 503
    assert missing.json()["detail"].startswith("Waiting for the built-in models and datasets (shapes-val missing)")
    stack.redis.delete(f"{stack.namespace}:catalog:builtins-registered")
    assert "a worker registers them when it starts" in httpx.get(f"{stack.base_url}/readyz").json()["detail"]
