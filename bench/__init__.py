"""Benchmarks (not part of the service). Run from the repository root: `uv run python -m bench`
for all of them (bench/__main__.py), or one, e.g. `uv run python -m bench.backbone`."""

import os
from pathlib import Path


def results_dir() -> Path:
    """Where the tables go: bench/results, unless GLASSBOX_BENCH_RESULTS names another folder
    (`python -m bench --quick` uses one, so that smoke runs never overwrite the real figures)."""
    folder = Path(os.environ.get("GLASSBOX_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
