"""The Python client and the `glassbox run` / `glassbox jobs` commands against a real service."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from service.client import Client, GlassboxError
from tests.conftest import ALICE, BOB, REPO, TEST_MODEL
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
