"""Image datasets built in memory for the tests: PNGs, zips, tars (ImageFolder and WebDataset
layouts), and the hostile archives the upload and registration paths must refuse."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile

import numpy as np
from PIL import Image


def png(colour=(255, 0, 0), size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_of(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_info(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar_of(entries: dict[str, bytes] | list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    members = [tar_info(n, d) for n, d in entries.items()] if isinstance(entries, dict) else entries
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def shapes_pictures(count: int) -> tuple[list[np.ndarray], list[int]]:
    """The first `count` images of shapes-val (64 x 64), and their classes."""
    from worker.models.shapes import shapes_val

    images, labels = shapes_val()
    return [np.asarray(images[i]) for i in range(count)], [int(labels[i]) for i in range(count)]


def image_folder(count: int) -> dict[str, bytes]:
    """shapes-val images in the ImageFolder layout: `c<class>/<number>.png`."""
    pictures, labels = shapes_pictures(count)
    return {f"c{label}/{number:03d}.png": png_of(p) for number, (p, label) in enumerate(zip(pictures, labels))}


def inline(entries: dict[str, bytes]) -> list[str]:
    """The images of `entries` in file-name order, as deconvnet's inline `images`."""
    return [base64.b64encode(entries[name]).decode() for name in sorted(entries)]


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
