"""Checks of uploaded files, done by the API before anything is stored (no torch, no unpickling).

Each check either returns what it learned about the file or raises `UploadRejected` with a
message that names the problem (the entry, row or column) and, where it helps, what to do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_DATASET_IMAGES = 20_000
MAX_IMAGE_PIXELS = 25_000_000  # one 5000 x 5000 image; more is a decompression bomb here
MAX_COMPRESSION_RATIO = 200
MAX_CSV_ROWS = 1_000_000
MAX_CSV_COLUMNS = 2_000
MAX_CATEGORIES_LISTED = 50
MAX_SKIPPED_LISTED = 20
# Entries taken for images: a picture's extension, or PNG/JPEG bytes under any name. Other
# entries (README.txt, .DS_Store, __MACOSX/ forks) are skipped and listed in the record; an
# image-named entry that is not a PNG or JPEG is refused rather than silently left out.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")

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


# ---- models ------------------------------------------------------------------------------


def _looks_pickled(data: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number.
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def check_model_file(data: bytes, declared_format: str) -> dict[str, Any]:
    """What kind of file this is, refusing pickles however they are dressed up."""
    if not data:
        raise UploadRejected("the model file is empty")
    if _looks_pickled(data):
        raise UploadRejected("this is a pickled checkpoint. " + EXPORT_ADVICE, "pickled-upload")
    if data[:4] == b"PK\x03\x04":
        return _check_pt2(data, declared_format)
    return _check_safetensors(data, declared_format)


def _check_pt2(data: bytes, declared_format: str) -> dict[str, Any]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRejected(f"the file starts like a zip archive but cannot be read: {exc}") from exc
    if any(n.endswith(".pkl") or n.endswith("/data.pkl") for n in names):
        raise UploadRejected(
            "this is a `torch.save` checkpoint (a zip holding a pickle). " + EXPORT_ADVICE, "pickled-upload"
        )
    format_entries = [n for n in names if n.endswith("/archive_format") or n == "archive_format"]
    if not format_entries or archive.read(format_entries[0]).strip() != b"pt2":
        raise UploadRejected("a zip archive that is not a torch.export .pt2 archive (no `archive_format` = pt2)")
    if declared_format != "exported_program":
        raise UploadRejected(f"the file is a torch.export archive but the manifest says format {declared_format!r}")
    return {"format": "exported_program", "entries": len(names)}


def _check_safetensors(data: bytes, declared_format: str) -> dict[str, Any]:
    if len(data) < 8:
        raise UploadRejected("the file is truncated (shorter than a safetensors header)")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length <= 0 or 8 + header_length > len(data):
        raise UploadRejected(
            "not a safetensors file, nor a torch.export .pt2 archive (or it is truncated); "
            "accepted formats: exported_program (.pt2), safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadRejected(f"the safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise UploadRejected("the safetensors header is not a JSON object")
    payload = len(data) - 8 - header_length
    tensors = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("data_offsets"), list):
            raise UploadRejected(f"safetensors entry {name!r} has no data_offsets")
        start, end = entry["data_offsets"]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= payload):
            raise UploadRejected(f"safetensors entry {name!r} points outside the file (truncated upload?)")
        tensors += 1
    if declared_format != "safetensors":
        raise UploadRejected(f"the file is safetensors but the manifest says format {declared_format!r}")
    return {"format": "safetensors", "tensors": tensors}


# ---- datasets ----------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    kind: str  # "images" | "table"
    count: int
    image_size: list[int] | None = None
    columns: list[dict[str, Any]] | None = None
    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # every entry left out, in archive order


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


def _is_image_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    name = info.filename
    base = name.rsplit("/", 1)[-1]
    if name.startswith("__MACOSX/") or base.startswith("."):
        return False  # macOS resource forks and hidden files, whatever their extension
    if PurePosixPath(base).suffix.lower() in IMAGE_EXTENSIONS:
        return True
    with archive.open(info) as entry:
        return entry.read(8).startswith(IMAGE_MAGIC)


def check_image_zip(data: bytes) -> DatasetSummary:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRejected(f"not a readable zip archive: {exc}") from exc
    images = []
    skipped = []
    total = 0
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        if name.startswith("/") or "\\" in name or any(part == ".." for part in name.split("/")):
            raise UploadRejected(f"zip entry {name!r} has an unsafe path")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) and info.file_size > 1_000_000:
            raise UploadRejected(f"zip entry {name!r} expands {info.file_size // max(info.compress_size, 1)}x: refused as a zip bomb")
        total += info.file_size
        if total > MAX_COMPRESSION_RATIO * max(len(data), 1):
            raise UploadRejected("the archive expands too much: refused as a zip bomb")
        try:
            is_image = _is_image_entry(archive, info)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # RuntimeError: encrypted entry
            raise UploadRejected(f"zip entry {name!r} cannot be read: {exc}") from exc
        (images if is_image else skipped).append(info)
    skipped_names = [i.filename for i in skipped]
    if not images:
        listed = f" (skipped, not images: {_listed(skipped_names)})" if skipped_names else ""
        raise UploadRejected(f"the zip archive holds no PNG or JPEG images{listed}")
    if len(images) > MAX_DATASET_IMAGES:
        raise UploadRejected(f"{len(images)} images; at most {MAX_DATASET_IMAGES} per dataset")
    sizes = set()
    for info in sorted(images, key=lambda i: i.filename):
        blob = archive.read(info)
        width, height = check_image_header(blob, f"zip entry {info.filename!r}", verify=True)
        sizes.add((height, width))
    names = sorted(i.filename for i in images)
    image_size = list(next(iter(sizes))) if len(sizes) == 1 else None
    return DatasetSummary("images", len(images), image_size=image_size, names=names, skipped=skipped_names)


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:MAX_SKIPPED_LISTED])
    return shown + (f" ... ({len(names)} in all)" if len(names) > MAX_SKIPPED_LISTED else "")


def _parse_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number


def check_csv(data: bytes) -> DatasetSummary:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadRejected(f"the CSV is not UTF-8 text: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
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
    return DatasetSummary("table", count, columns=columns)
