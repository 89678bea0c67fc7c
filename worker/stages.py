"""Where a job's time goes: the seconds of each stage (load, compute, artifacts), for the
`timings` of its result summary (worker/tasks.py writes them for every job).

The worker opens `compute` around the job function and `artifacts` around storing its files;
the job function marks finer stages with `ctx.stage("load")` or `ctx.stage("artifacts")` (drawing
charts, writing result.json), and every model load and dataset read through `ctx.models` and
`ctx.datasets` is charged to `load` on its own (`ChargedCalls`). Stages nest: each moment is
charged to the innermost stage open, so the stages never count a second twice and their sum
is at most the job's time on the worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

STAGES = ("load", "compute", "artifacts")


class StageClock:
    """Seconds per stage name, each moment charged to the innermost stage open."""

    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self._now = now
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []
        self._since = now()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._charge()
        self._open.append(name)
        try:
            yield
        finally:
            self._charge()
            self._open.pop()

    def _charge(self) -> None:
        now = self._now()
        if self._open:
            name = self._open[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + (now - self._since)
        self._since = now


class ChargedCalls:
    """`inner` (the worker's ModelLoader or DatasetLoader) with the calls of `methods` charged
    to `stage`: every kind's model loads and dataset reads are timed without the kind saying so.
    Any other attribute is `inner`'s own."""

    def __init__(self, inner: Any, clock: StageClock, stage: str, methods: Collection[str]):
        self._inner = inner
        self._clock = clock
        self._stage = stage
        self._methods = frozenset(methods)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._methods or not callable(value):
            return value

        @functools.wraps(value)
        def charged(*args: Any, **kwargs: Any) -> Any:
            with self._clock.stage(self._stage):
                return value(*args, **kwargs)

        return charged


def timings(clock: StageClock, *, queue_wait: float | None, worker_seconds: float) -> dict[str, float | None]:
    """The summary's `timings`: the queue wait (created to started, None when unknown), each
    stage's seconds (0 when the job had none) and the job's whole time on the worker (the stages
    plus what none of them covers: checking params, reporting progress)."""
    spent = {name: round(clock.seconds.get(name, 0.0), 6) for name in STAGES}
    return {
        "queue_wait_seconds": None if queue_wait is None else round(max(0.0, queue_wait), 6),
        **{f"{name}_seconds": seconds for name, seconds in spent.items()},
        "worker_seconds": round(max(worker_seconds, sum(clock.seconds.get(n, 0.0) for n in STAGES)), 6),
    }
