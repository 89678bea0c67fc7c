"""The Python client and the `glassbox run` / `glassbox jobs` commands against a real service."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from service.client import Client, GlassboxError
from service.embedded_redis import free_port
from tests.conftest import ALICE, BOB, REPO, TEST_MODEL, wait_until
from tests.plugins.lifecycle_tasks import artifact_payload


def test_submit_wait_download_with_progress(stack, tmp_path):
    with Client(stack.base_url, ALICE) as client:
        job = client.submit("test-lifecycle", TEST_MODEL, {"steps": 20, "step_seconds": 0.03}, metadata={"who": "client"})
        assert job.status == "queued" and job.metadata == {"who": "client"}
        seen = []
        done = client.wait(job.id, on_progress=lambda p: seen.append(p.fraction))
        assert done.status == "succeeded"
        assert any(0 < f < 1 for f in seen) and seen == sorted(seen)
        paths = client.download(done, tmp_path)
        assert {p.name for p in paths} == {"result.json", "payload.bin"}
        payload = (tmp_path / "payload.bin").read_bytes()
        assert payload == artifact_payload(job.id, 1024)
        ref = next(a for a in done.result.artifacts if a.name == "payload.bin")
        assert hashlib.sha256(payload).hexdigest() == ref.sha256


def test_polling_honours_retry_after(stack, monkeypatch):
    pauses = []
    monkeypatch.setattr("service.client.time.sleep", lambda seconds: pauses.append(seconds))
    with Client(stack.base_url, ALICE) as client:
        job = client.submit("test-lifecycle", TEST_MODEL, {"steps": 10, "step_seconds": 0.05})
        assert client.wait(job.id, follow=False).status == "succeeded"
    assert pauses and set(pauses) == {1.0}


def test_errors_carry_the_problem_fields_and_tenants_stay_apart(stack):
    with Client(stack.base_url, ALICE) as alice, Client(stack.base_url, BOB) as bob:
        with pytest.raises(GlassboxError) as info:
            alice.submit("test-lifecycle", TEST_MODEL, {"steps": -1})
        assert info.value.status == 422 and info.value.errors[0]["loc"] == ["body", "params", "steps"]
        job = alice.submit("test-lifecycle", TEST_MODEL, {"steps": 200, "step_seconds": 0.05})
        with pytest.raises(GlassboxError) as info:
            bob.get(job.id)
        assert info.value.status == 404
        assert alice.cancel(job.id).status in ("canceled", "queued", "running")
        assert alice.wait(job.id).status == "canceled"
        alice.delete(job.id)
        with pytest.raises(GlassboxError):
            alice.get(job.id)
    with Client(stack.base_url, "not-a-key") as stranger, pytest.raises(GlassboxError) as info:
        stranger.models()
    assert info.value.status == 401


def test_jobs_iterates_every_page(stack):
    with Client(stack.base_url, BOB) as client:
        created = [client.submit("test-lifecycle", TEST_MODEL, {"steps": 0}).id for _ in range(7)]
        listed = [j.id for j in client.jobs(page_size=3)]
        assert listed[:7] == sorted(created, reverse=True)


def glassbox(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLASSBOX_URL": stack.base_url, "GLASSBOX_API_KEY": ALICE, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_the_run_and_jobs_commands(stack, tmp_path):
    out = tmp_path / "artifacts"
    result = glassbox(stack, "run", "test-lifecycle", "--model", TEST_MODEL, "-p", "steps=5", "-p", "step_seconds=0.02", "--wait", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["payload.bin", "result.json"]
    assert "100.0%" in result.stderr and "succeeded" in result.stderr
    job_id = result.stderr.split()[1]
    listing = glassbox(stack, "jobs", "--limit", "5")
    assert listing.returncode == 0 and job_id in listing.stdout
    bad = glassbox(stack, "run", "test-lifecycle", "--model", TEST_MODEL, "-p", "steps=-1")
    assert bad.returncode == 1 and "params.steps" in bad.stderr
    failed = glassbox(stack, "run", "test-lifecycle", "--model", TEST_MODEL, "-p", "outcome=fail", "-p", "steps=1", "--wait")
    assert failed.returncode == 1 and "job-error" in failed.stderr


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def one_line_failure(result: subprocess.CompletedProcess, *expected: str) -> str:
    """A failed client command: exit 1, one line on stderr containing each of `expected`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


README_RUN = ["run", "deconvnet", "--model", "shapes-cnn", "-p", "layer=features.6", "-p", "dataset=shapes-val"]


def test_without_a_service_every_failure_is_one_line_naming_the_url_and_what_to_do(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    for command in (README_RUN, ["jobs"]):
        one_line_failure(cli(*command, "--url", nobody), f"cannot connect to {nobody}/v1/jobs", "glassbox up", "--url")
    one_line_failure(cli(*README_RUN, "--url", "localhost:8000"), "'localhost:8000' is not a usable URL", "http://127.0.0.1:8000")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        one_line_failure(cli("jobs", "--url", url, "--timeout", "0.5"), f"{url}/v1/jobs", "did not answer within 0.5 s", "--timeout")
    with _not_glassbox(tmp_path) as url:
        one_line_failure(cli("jobs", "--url", url), f"{url}/v1/jobs", "answered 404", f"is {url} a Glassbox service?")
        (tmp_path / "v1").mkdir()
        (tmp_path / "v1" / "jobs").write_text("<html>not an API</html>")
        one_line_failure(cli("jobs", "--url", url), url, "did not answer as a Glassbox API")
    # Argument errors stay argparse's (exit 2).
    assert cli("run", "deconvnet").returncode == 2
    assert cli(*README_RUN, "-p", "no-equals-sign", "--url", nobody).returncode == 2


@contextlib.contextmanager
def _not_glassbox(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_errors_and_an_interrupt_are_one_line_too(stack):
    refused = glassbox(stack, "jobs", "--api-key", "not-a-key")
    one_line_failure(refused, f"{stack.base_url}/v1/jobs", "answered 401", "--api-key or GLASSBOX_API_KEY")
    invalid = glassbox(stack, "run", "test-lifecycle", "--model", TEST_MODEL, "-p", "steps=-1")
    one_line_failure(invalid, "answered 422", "params.steps")

    env = {**os.environ, "GLASSBOX_URL": stack.base_url, "GLASSBOX_API_KEY": ALICE, "PYTHONPATH": str(REPO)}
    waiting = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "run", "test-lifecycle", "--model", TEST_MODEL,
         "-p", "steps=400", "-p", "step_seconds=0.05", "--wait"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A Ctrl-C as in a terminal, even where pytest itself runs with SIGINT ignored (started in
        # the background by a shell without job control), which the child would inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        first = waiting.stderr.readline()  # "job <id> queued"
        job_id = first.split()[1]
        with Client(stack.base_url, ALICE) as client:
            wait_until(lambda: client.get(job_id).status == "running", timeout=60, what="the job to run")
        waiting.send_signal(signal.SIGINT)
        _, rest = waiting.communicate(timeout=60)
        assert waiting.returncode == 1, rest
        assert "Traceback" not in rest
        last = rest.strip().splitlines()[-1]
        assert last.startswith("glassbox run: interrupted; job " + job_id) and stack.base_url in last, last
        assert f"/v1/jobs/{job_id}/cancel" in last
    finally:
        waiting.kill()
        with Client(stack.base_url, ALICE) as client, contextlib.suppress(GlassboxError):
            client.cancel(job_id)  # cleanup only: on a loaded machine the 20-s job may have ended
