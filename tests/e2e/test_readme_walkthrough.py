"""The README, followed literally by a new user: `glassbox up`, then every shell and Python block
of its walk-through, job kinds and uploads, run as written against that service. Every HTTP answer
on the way is below 400, and a job of every kind succeeds.

The only edits to the blocks: the port (the README says 8000), `uv run ` dropped (the test already
runs inside the project's environment), and curl taught to report each status on stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, wait_until
from tests.e2e.test_first_start import UpProcess

README = REPO / "README.md"
# Sections whose code a user runs against `glassbox up`, in order.
WALKED_SECTIONS = ("## A job, with curl", "## From Python and from the shell", "## Job kinds", "## Models and datasets")
STATUS_LINE = re.compile(r"^HTTP (\d{3}) (\S+)$")

pytestmark = pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="needs curl and jq")


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the walked sections, in README order."""
    text = README.read_text()
    sections = re.split(r"(?m)^(?=## )", text)
    blocks = []
    for section in sections:
        if section.startswith(WALKED_SECTIONS):
            blocks += re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.S)
    return blocks


def as_run_here(code: str, port: int) -> str:
    return code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("uv run ", "")


@pytest.mark.timeout(1200)  # every kind's example (an atlas among them) on one worker
def test_the_readme_walks_a_new_user_to_a_succeeded_job_of_every_kind(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) >= 5 and any("jq -r .id" in code for _, code in blocks)
    up = UpProcess(tmp_path)
    try:
        wait_until(lambda: any("glassbox: open " in line for line in up.lines), timeout=120, what="glassbox up's URL")
        workdir = tmp_path / "user"
        workdir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        env["PYTHONPATH"] = str(REPO)
        env["GLASSBOX_URL"] = up.base
        statuses: list[tuple[int, str]] = []
        for language, code in blocks:
            code = as_run_here(code, up.port)
            if language == "python":
                command = [sys.executable, "-c", code]
            else:
                # Each curl also writes `HTTP <status> <url>` to stderr.
                prelude = "set -euo pipefail\ncurl() { command curl -w '%{stderr}HTTP %{http_code} %{url_effective}\\n' \"$@\"; }\n"
                command = ["bash", "-c", prelude + code]
            done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{code}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-3000:]}"
            for line in done.stderr.splitlines():
                match = STATUS_LINE.match(line)
                if match:
                    statuses.append((int(match.group(1)), match.group(2)))
        assert statuses and all(status < 400 for status, _ in statuses), [s for s in statuses if s[0] >= 400]
        assert (workdir / "out" / "grid.png").exists()  # the CLI's and the client's downloads
        with httpx.Client(base_url=up.base, timeout=30) as client:

            def every_kind_succeeded() -> set[str] | None:
                jobs = client.get("/v1/jobs", params={"page_size": 200}).json()["items"]
                if any(job["status"] in ("queued", "running") and not job["cancel_requested"] for job in jobs):
                    return None
                return {job["kind"] for job in jobs if job["status"] == "succeeded"}

            kinds = wait_until(every_kind_succeeded, timeout=300, what="every job of the walk-through to end", interval=1)
            models = {name: client.get(f"/v1/models/{name}").json() for name in ("my-net", "my-resnet")}
        assert kinds >= {"deconvnet", "activation_maximization", "tabular_attribution", "model_inspection", "atlas"}, kinds
        assert models["my-net"]["status"] == "ready" and models["my-resnet"]["status"] == "ready"
        assert models["my-net"]["batch"] == {"min": 1, "max": None}
    finally:
        up.kill()
