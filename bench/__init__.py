"""Benchmarks (not part of the service). Run from the repository root: `uv run python -m bench`
for all of them (bench/__main__.py), or one, e.g. `uv run python -m bench.backbone`."""

import os
import time
from pathlib import Path


def results_dir() -> Path:
    """Where the tables go: bench/results, unless GLASSBOX_BENCH_RESULTS names another folder
    (`python -m bench --quick` uses one, so that smoke runs never overwrite the real figures)."""
    folder = Path(os.environ.get("GLASSBOX_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def best_of(repeats: int, run) -> tuple[object, float]:
    """The result of `run()` and its shortest wall time over `repeats` runs (a shared machine)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def publish(text: str, path: Path, write: bool = True) -> None:
    """Print a benchmark's table, and write it to its results file unless asked not to."""
    print(text)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
