"""The chaos run's account: every job the load was told was accepted, settled and checked, and
the counts written as markdown.

A clean account: each accepted job `succeeded` with artifacts whose sha256 is the recorded one
*and* the independently expected one (the lifecycle kind's bytes are a function of the job id;
a real kind's are the same for every job of one spec), or `failed` with `worker-lost`. Anything
else (missing, stuck, another outcome, a corrupt artifact) is listed in `problems`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from service.client import Client
from tests.plugins.lifecycle_tasks import artifact_payload

if TYPE_CHECKING:
    from tests.reliability.chaos import ChaosConfig, ChaosRun

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "canceled"}


@dataclass
class ChaosReport:
    config: ChaosConfig
    accepted: int
    by_spec: Counter  # "lifecycle", "deconvnet", "tabular_attribution" -> accepted jobs
    outcomes: Counter  # "succeeded", "failed: worker-lost", ...
    intact_artifacts: int
    problems: list[str]  # anything that is not a clean account: must be empty
    worker_kills: int
    redis_restarts: int
    redis_down_seconds: float
    create_retries: Counter
    creates_given_up: int
    poll_retries: Counter
    listed_not_accepted: int
    attempts_histogram: Counter
    elapsed: float
    settle_seconds: float

    def markdown(self, command: str) -> str:
        c = self.config
        lines = [
            "# Chaos run: load with worker SIGKILLs and a Redis restart",
            "",
            f"Command: `{command}`",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {_commit()}; {os.cpu_count()} CPUs. `glassbox up --workers {c.workers}` "
            f"with its own redis-server (append-only file, appendfsync everysec); for {c.duration:g} s, "
            f"{c.clients} clients that each create a job, poll it to its end and download its artifacts, and "
            f"{c.submitters} that create one every {c.submit_every:g} s; {c.real_fraction:.0%} of the jobs are "
            f"real (deconvnet on shapes-cnn, tabular_attribution on retail-mlp), the rest `test-lifecycle` "
            f"(0.05-2 s, up to 300 kB of artifacts); one worker SIGKILLed every ~{c.kill_every:g} s; redis-server SIGKILLed once at "
            f"{c.redis_restart_at:.0%} of the run and restarted after {c.redis_down_seconds:g} s on the same data. "
            f"Worker heartbeat 0.5 s, lost after 3 s, one retry after a lost worker.",
            "",
            "| Count | Value |",
            "|---|---|",
            f"| jobs accepted (202) | {self.accepted} ({_counts(self.by_spec)}) |",
        ]
        for outcome, count in sorted(self.outcomes.items()):
            lines.append(f"| ... {outcome} | {count} |")
        lines += [
            "| succeeded jobs whose every artifact matched (recorded sha256, and the expected bytes: a function "
            f"of the job id for test-lifecycle, the same bytes for every job of one spec for the real kinds) | "
            f"{self.intact_artifacts} |",
            f"| missing, stuck, wrong outcome or corrupt artifact | **{len(self.problems)}** |",
            f"| jobs listed for the tenant but never acknowledged to the client | {self.listed_not_accepted} |",
            f"| worker SIGKILLs / Redis restarts | {self.worker_kills} / {self.redis_restarts} |",
            f"| create retries (by reason) | {_counts(self.create_retries)} |",
            f"| creates given up (never acknowledged) | {self.creates_given_up} |",
            f"| poll retries (by reason) | {_counts(self.poll_retries)} |",
            f"| attempts per accepted job | {_counts(self.attempts_histogram)} |",
            f"| load / settle time | {c.duration:g} s / {self.settle_seconds:.1f} s |",
        ]
        if self.problems:
            lines += ["", "Problems:", ""] + [f"- {p}" for p in self.problems[:50]]
        return "\n".join(lines) + "\n"


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))) or "none"


def account(run: ChaosRun, began: float, settle_began: float) -> ChaosReport:
    """Every accepted job settled and checked: the counts, and anything that is not a clean account."""
    problems: list[str] = []
    outcomes: Counter = Counter()
    attempts: Counter = Counter()
    intact = 0
    real_digests: dict[tuple[str, str], dict[str, str]] = {}  # (spec, artifact) -> sha256 -> job
    with run.tenant_client(timeout=30) as client:
        jobs = {
            job_id: settled_job(client, job_id, settle_began, run.config.settle_seconds)
            for job_id in run.tally.accepted
        }
        settle = time.monotonic() - settle_began
        for job_id, job in jobs.items():
            spec = run.tally.accepted[job_id]
            if job is None:
                problems.append(f"{job_id} ({spec}): missing (404)")
                continue
            attempts[job["attempts"]] += 1
            error = job.get("error") or {}
            outcome = job["status"] + (f": {error.get('type')}" if error else "")
            outcomes[outcome] += 1
            if job["status"] not in TERMINAL:
                problems.append(f"{job_id} ({spec}): stuck {job['status']} after {settle:.0f} s")
            elif job["status"] == "failed" and error.get("type") != "worker-lost":
                problems.append(f"{job_id} ({spec}): failed {error}")
            elif job["status"] == "canceled":
                problems.append(f"{job_id} ({spec}): canceled, but nobody asked")
            elif job["status"] == "succeeded":
                bad = check_artifacts(run, client, job, spec, real_digests)
                problems += [f"{job_id} ({spec}): {b}" for b in bad]
                intact += not bad
        with Client(run.base_url, run.tenant_key) as glassbox:
            listed = {job.id for job in glassbox.jobs(page_size=200)}
    for (spec, name), digests in real_digests.items():
        if len(digests) > 1:
            problems.append(f"{spec} {name}: {len(digests)} different contents for one spec: {digests}")
    return ChaosReport(
        config=run.config,
        accepted=len(jobs),
        by_spec=Counter(run.tally.accepted.values()),
        outcomes=outcomes,
        intact_artifacts=intact,
        problems=problems,
        worker_kills=run.worker_kills,
        redis_restarts=run.redis_restarts,
        redis_down_seconds=run.redis_down,
        create_retries=run.tally.create_retries,
        creates_given_up=run.tally.creates_given_up,
        poll_retries=run.tally.poll_retries,
        listed_not_accepted=len(listed - set(jobs)),
        attempts_histogram=attempts,
        elapsed=time.monotonic() - began,
        settle_seconds=settle,
    )


def settled_job(client: httpx.Client, job_id: str, settle_began: float, settle_seconds: float) -> dict | None:
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            job = response.json()
            if job["status"] in TERMINAL or time.monotonic() - settle_began > settle_seconds:
                return job
        time.sleep(0.5)


def check_artifacts(run: ChaosRun, client: httpx.Client, job: dict, spec: str, real_digests: dict) -> list[str]:
    bad = []
    refs = {a["name"]: a for a in job["result"]["artifacts"]}
    if spec == "lifecycle":
        size = job["params"]["artifact_bytes"]
        expected = {
            "payload.bin": artifact_payload(job["id"], size),
            "result.json": json.dumps({"steps": job["params"]["steps"], "job_id": job["id"]}).encode(),
        }
        if set(refs) != set(expected):
            bad.append(f"artifacts {sorted(refs)}, expected {sorted(expected)}")
    for name, ref in refs.items():
        content = run.download(client, ref["url"])
        if content is None:
            bad.append(f"{name}: not downloadable")
            continue
        digest = hashlib.sha256(content).hexdigest()
        if digest != ref["sha256"] or len(content) != ref["bytes"]:
            bad.append(
                f"{name}: sha256 {digest[:12]} / {len(content)} bytes, recorded {ref['sha256'][:12]} / {ref['bytes']}"
            )
        elif spec == "lifecycle" and content != expected.get(name):
            bad.append(f"{name}: content differs from the expected bytes")
        elif spec != "lifecycle" and not name.endswith(".json"):
            real_digests.setdefault((spec, name), {}).setdefault(digest[:12], job["id"])
    return bad
