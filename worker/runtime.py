"""The state a worker process keeps between jobs, handed to job functions by the worker.

RQ calls job functions with only the job id; the worker sets the runtime in a context variable
for the duration of each job (see `GlassboxWorker.execute_job`), so tasks get it explicitly
from the worker that runs them and there is no module-level state to set up or leak.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from service.jobspec import JobKind
from service.jobstore import ArtifactFiles, JobRuns, JobStore
from service.settings import Settings


@dataclass
class WorkerRuntime:
    name: str
    settings: Settings
    store: JobStore
    runs: JobRuns
    artifacts: ArtifactFiles
    kinds: dict[str, JobKind]
    device: str
    models: Any = None  # worker.models.loader.ModelLoader
    datasets: Any = None  # worker.datasets.DatasetLoader
    shutting_down: threading.Event = field(default_factory=threading.Event)
    # Set when the process must end after the current job (a sticky CUDA error).
    exit_code: int | None = None
    _handlers: dict[str, Callable] = field(default_factory=dict)

    def handler(self, kind: JobKind) -> Callable:
        if kind.name not in self._handlers:
            module_name, _, attribute = kind.handler.partition(":")
            self._handlers[kind.name] = getattr(importlib.import_module(module_name), attribute)
        return self._handlers[kind.name]


_current: ContextVar[WorkerRuntime] = ContextVar("glassbox_worker_runtime")


def current_runtime() -> WorkerRuntime:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("glassbox jobs run inside `glassbox worker` (GlassboxWorker)") from None


def running_with(runtime: WorkerRuntime):
    """Context manager that makes `runtime` current for one job."""

    class _Scope:
        def __enter__(self):
            self.token = _current.set(runtime)
            return runtime

        def __exit__(self, *exc):
            _current.reset(self.token)
            return False

    return _Scope()
