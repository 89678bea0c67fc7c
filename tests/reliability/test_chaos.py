"""A short chaos round in CI: worker SIGKILLs and one Redis kill under load, then the account.

The full run (longer, more workers) is `uv run python -m tests.reliability.chaos`; this one is
bounded to about a minute and a half on a 2-core machine.
"""

from __future__ import annotations

from tests.conftest import REPO
from tests.reliability.chaos import ChaosConfig, ChaosRun


def test_every_accepted_job_is_accounted_for_after_worker_kills_and_a_redis_restart(tmp_path):
    config = ChaosConfig(workers=2, duration=20, clients=6, kill_every=3.0, settle_seconds=150)
    report = ChaosRun(config, tmp_path).run()
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "chaos.md").write_text(report.markdown("pytest tests/reliability/test_chaos.py"))

    assert report.problems == []
    assert report.redis_restarts == 1 and report.worker_kills >= 3
    assert report.accepted >= 5 and report.creates_given_up == 0
    assert sum(report.outcomes.values()) == report.accepted
    assert set(report.outcomes) <= {"succeeded", "failed: worker-lost"}
    assert report.intact_artifacts == report.outcomes["succeeded"]
    assert report.listed_not_accepted == 0
