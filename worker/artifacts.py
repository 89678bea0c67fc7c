"""The artifact writers every job kind uses: one way to write each file type.

Identical jobs must give identical artifact bytes (retries and the chaos account compare
sha256s), so each writer fixes everything that could vary: arrays are float32 in C order,
JSON is `indent=1` with keys in insertion order, CSV is RFC 4180 quoting with `\\n` line ends
(Python's `csv` module, QUOTE_MINIMAL), and PNGs are passed through as drawn (the figure code
already strips the time and software chunks).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from worker.context import ArtifactBlob

__all__ = ["csv_artifact", "json_artifact", "npy_artifact", "png_artifact"]


def npy_artifact(name: str, array: Any) -> ArtifactBlob:
    """`array` as float32 in C order: a reader never sees `fortran_order` or another dtype."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return ArtifactBlob(name, "application/octet-stream", buffer.getvalue())


def json_artifact(name: str, document: Any) -> ArtifactBlob:
    """`document` as JSON, one space of indent (readable, yet small for a 3000-row result).
    NumPy scalars that are not Python floats (float32, int64, ...) are written as numbers
    instead of failing the job at its very end."""
    text = json.dumps(document, indent=1, default=_numpy_scalar)
    return ArtifactBlob(name, "application/json", text.encode())


def png_artifact(name: str, png: bytes) -> ArtifactBlob:
    return ArtifactBlob(name, "image/png", png)


def csv_artifact(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> ArtifactBlob:
    """A CSV table: `header`, then `rows`. Cells are written with `str()`, so a caller that wants
    a given number format passes the formatted text. A cell holding a comma, a quote or a `\n`
    is quoted (quotes doubled), as RFC 4180 says; the file is UTF-8 without a BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ArtifactBlob(name, "text/csv", buffer.getvalue().encode())


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
