"""Checks of uploaded files, done before anything is stored (no torch, no unpickling).

Every check reads a seekable binary file (the spool Starlette wrote the upload to, a local
file) a piece at a time, never the whole file into memory. Each either returns what it learned
or raises `UploadRejected` with a message that names the problem (the entry, row or column)
and, where it helps, what to do. Image archives are checked and indexed in service/datasets.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_IMAGE_PIXELS = 25_000_000  # one 5000 x 5000 image; more is a decompression bomb here
MAX_CSV_ROWS = 1_000_000
MAX_CSV_COLUMNS = 2_000
MAX_CATEGORIES_LISTED = 50
MAX_SKIPPED_LISTED = 20
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors' own limit

EXPORT_ADVICE = (
    "Glassbox never unpickles uploads. Export the model instead, with a batch dimension that "
    "takes any size (`Dim`, and an example batch of 2: torch fixes a dimension of size 1): "
    "`torch.export.save(torch.export.export(model.eval(), (torch.randn(2, 3, 224, 224),), "
    "dynamic_shapes=({0: torch.export.Dim('batch')},)), 'model.pt2')` "
    "(format `exported_program`; without `dynamic_shapes` the archive takes only its example's batch "
    "size, and jobs run it one piece at a time), or save its weights with "
    "`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')` "
    "(format `safetensors`, with the manifest's `architecture`)."
)


class UploadRejected(ValueError):
    def __init__(self, message: str, slug: str = "invalid-upload"):
        super().__init__(message)
        self.slug = slug


def file_size(file: IO[bytes]) -> int:
    """The size of a seekable file; leaves it at its start."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    return size


def head_bytes(file: IO[bytes], count: int) -> bytes:
    file.seek(0)
    data = file.read(count)
    file.seek(0)
    return data


# ---- models ------------------------------------------------------------------------------


def _looks_pickled(start: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number.
    return len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5


def check_model_file(file: IO[bytes], declared_format: str) -> dict[str, Any]:
    """What kind of file this is, refusing pickles however they are dressed up."""
    size = file_size(file)
    if size == 0:
        raise UploadRejected("the model file is empty")
    start = head_bytes(file, 8)
    if _looks_pickled(start):
        raise UploadRejected("this is a pickled checkpoint. " + EXPORT_ADVICE, "pickled-upload")
    if start[:4] == b"PK\x03\x04":
        return _check_pt2(file, declared_format)
    return _check_safetensors(file, size, declared_format)


def _check_pt2(file: IO[bytes], declared_format: str) -> dict[str, Any]:
    try:
        archive = zipfile.ZipFile(file)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRejected(f"the file starts like a zip archive but cannot be read: {exc}") from exc
    if any(n.endswith(".pkl") or n.endswith("/data.pkl") for n in names):
        raise UploadRejected(
            "this is a `torch.save` checkpoint (a zip holding a pickle). " + EXPORT_ADVICE, "pickled-upload"
        )
    format_entries = [n for n in names if n.endswith("/archive_format") or n == "archive_format"]
    archive_format = b""
    if format_entries:
        try:
            with archive.open(format_entries[0]) as entry:
                archive_format = entry.read(64).strip()
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise UploadRejected(f"the archive's `archive_format` entry cannot be read: {exc}") from exc
    if archive_format != b"pt2":
        raise UploadRejected("a zip archive that is not a torch.export .pt2 archive (no `archive_format` = pt2)")
    if declared_format != "exported_program":
        raise UploadRejected(f"the file is a torch.export archive but the manifest says format {declared_format!r}")
    return {"format": "exported_program", "entries": len(names)}


def _check_safetensors(file: IO[bytes], size: int, declared_format: str) -> dict[str, Any]:
    if size < 8:
        raise UploadRejected("the file is truncated (shorter than a safetensors header)")
    (header_length,) = struct.unpack("<Q", head_bytes(file, 8))
    if header_length <= 0 or 8 + header_length > size or header_length > MAX_SAFETENSORS_HEADER:
        raise UploadRejected(
            "not a safetensors file, nor a torch.export .pt2 archive (or it is truncated); "
            "accepted formats: exported_program (.pt2), safetensors"
        )
    file.seek(8)
    raw_header = file.read(header_length)
    file.seek(0)
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadRejected(f"the safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise UploadRejected("the safetensors header is not a JSON object")
    payload = size - 8 - header_length
    tensors = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("data_offsets"), list):
            raise UploadRejected(f"safetensors entry {name!r} has no data_offsets")
        offsets = entry["data_offsets"]
        if len(offsets) != 2 or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= payload:
            raise UploadRejected(f"safetensors entry {name!r} points outside the file (truncated upload?)")
        tensors += 1
    if declared_format != "safetensors":
        raise UploadRejected(f"the file is safetensors but the manifest says format {declared_format!r}")
    return {"format": "safetensors", "tensors": tensors}


# ---- images ------------------------------------------------------------------------------


def check_image_header(data: bytes, label: str, *, verify: bool = False) -> tuple[int, int]:
    """(width, height) from the image's header, refusing other formats and decompression bombs
    before anything decodes the pixels; with `verify`, also Pillow's check of the whole file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
            if image_format not in IMAGE_FORMATS:
                raise UploadRejected(f"{label} is {image_format}; accepted: PNG, JPEG")
            if width * height > MAX_IMAGE_PIXELS:
                raise UploadRejected(
                    f"{label} has {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} (decompression bomb guard)"
                )
            if verify:
                image.verify()
    except UploadRejected:
        raise
    except UnidentifiedImageError as exc:  # its message is the repr of our buffer: say it plainly
        raise UploadRejected(f"{label} is not a PNG or JPEG image (Pillow cannot identify its bytes)") from exc
    except Image.DecompressionBombError as exc:  # Pillow's own, far larger, limit
        raise UploadRejected(f"{label} declares too many pixels: {exc} (decompression bomb guard)") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise UploadRejected(f"{label} is not a readable PNG or JPEG image: {exc}") from exc
    return width, height


def listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:MAX_SKIPPED_LISTED])
    return shown + (f" ... ({len(names)} in all)" if len(names) > MAX_SKIPPED_LISTED else "")


# ---- tables ------------------------------------------------------------------------------


@dataclass
class TableSummary:
    count: int
    columns: list[dict[str, Any]] = field(default_factory=list)


def _parse_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number


def check_csv(file: IO[bytes] | bytes) -> TableSummary:
    """Column types (numeric or categorical), missing cells and categories of a CSV with a
    header, read row by row."""
    binary = io.BytesIO(file) if isinstance(file, bytes) else file
    binary.seek(0)
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        return _check_rows(csv.reader(text))
    except UnicodeDecodeError as exc:
        raise UploadRejected(f"the CSV is not UTF-8 text: {exc}") from exc
    finally:
        text.detach()  # leave the caller's file open
        binary.seek(0)


def _check_rows(reader: Any) -> TableSummary:
    try:
        header = next(reader)
    except StopIteration:
        raise UploadRejected("the CSV is empty; a header row is required") from None
    except csv.Error as exc:
        raise UploadRejected(f"the CSV cannot be parsed: {exc}") from exc
    header = [h.strip() for h in header]
    if not header or any(not h for h in header):
        raise UploadRejected("the header row has an empty column name")
    if len(set(header)) != len(header):
        raise UploadRejected("the header row repeats a column name")
    if len(header) > MAX_CSV_COLUMNS:
        raise UploadRejected(f"{len(header)} columns; at most {MAX_CSV_COLUMNS}")
    numeric = [True] * len(header)
    values: list[set[str]] = [set() for _ in header]
    missing = [0] * len(header)
    count = 0
    try:
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise UploadRejected(f"row {line_number - 1} (line {line_number}) has {len(row)} fields; the header has {len(header)}")
            count += 1
            if count > MAX_CSV_ROWS:
                raise UploadRejected(f"more than {MAX_CSV_ROWS} rows")
            for column, value in enumerate(row):
                value = value.strip()
                if value == "":
                    missing[column] += 1
                    continue
                if numeric[column]:
                    number = _parse_number(value)
                    if number is None:
                        numeric[column] = False
                    elif not math.isfinite(number):
                        raise UploadRejected(
                            f"row {line_number - 1}, column {header[column]!r}: {value!r} is not a finite number"
                        )
                if len(values[column]) <= MAX_CATEGORIES_LISTED:
                    values[column].add(value)
    except csv.Error as exc:
        raise UploadRejected(f"the CSV cannot be parsed: {exc}") from exc
    if count == 0:
        raise UploadRejected("the CSV has a header but no rows")
    columns = []
    for column, name in enumerate(header):
        entry: dict[str, Any] = {"name": name, "type": "numeric" if numeric[column] else "categorical",
                                 "missing": missing[column]}
        if not numeric[column]:
            distinct = sorted(values[column])
            entry["categories"] = distinct if len(distinct) <= MAX_CATEGORIES_LISTED else None
        columns.append(entry)
    return TableSummary(count, columns)
