"""The stage clock behind every job's `timings` (worker/stages.py), on a clock the test moves:
each moment is charged to the innermost stage open, loader calls to `load`, and the summary's
timings add up."""

from __future__ import annotations

import pytest

from worker.stages import ChargedCalls, StageClock, timings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_moment_is_charged_to_the_innermost_stage_open():
    clock = Clock()
    stages = StageClock(clock)
    clock.now += 5  # before any stage: charged to none
    with stages.stage("compute"):
        clock.now += 1
        with stages.stage("load"):
            clock.now += 2
            with stages.stage("load"):
                clock.now += 0.5
        clock.now += 3
        with stages.stage("artifacts"):
            clock.now += 0.25
    clock.now += 7
    assert stages.seconds == {"compute": 4.0, "load": 2.5, "artifacts": 0.25}
    with pytest.raises(ValueError), stages.stage("compute"):
        clock.now += 1
        raise ValueError  # a stage left by an exception is charged all the same
    assert stages.seconds["compute"] == 5.0

    summary = timings(stages, queue_wait=0.125, worker_seconds=20.0)
    assert summary == {
        "queue_wait_seconds": 0.125,
        "load_seconds": 2.5,
        "compute_seconds": 5.0,
        "artifacts_seconds": 0.25,
        "worker_seconds": 20.0,
    }
    assert timings(StageClock(clock), queue_wait=None, worker_seconds=0.0) == {
        "queue_wait_seconds": None, "load_seconds": 0.0, "compute_seconds": 0.0, "artifacts_seconds": 0.0,
        "worker_seconds": 0.0,
    }  # fmt: skip
    # a wait measured on two hosts' clocks can come out negative: it is never reported so
    assert timings(stages, queue_wait=-0.01, worker_seconds=20.0)["queue_wait_seconds"] == 0.0


def test_loader_calls_are_charged_to_their_stage_and_the_rest_passes_through():
    clock = Clock()
    stages = StageClock(clock)

    class Loader:
        catalog = "the catalog"

        def load(self, name: str) -> str:
            clock.now += 2
            return f"model {name}"

        def other(self) -> str:
            clock.now += 3
            return "other"

    charged = ChargedCalls(Loader(), stages, "load", ["load"])
    with stages.stage("compute"):
        assert charged.load("m") == "model m" and charged.other() == "other" and charged.catalog == "the catalog"
    assert stages.seconds == {"load": 2.0, "compute": 3.0}
