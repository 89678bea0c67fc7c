"""Benchmarks (not part of the service). Run from the repository root, e.g.
`.venv/bin/python -m bench.backbone`."""
