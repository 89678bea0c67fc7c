"""The hostile bytes of the hostile-input table: zip bombs, decompression-bomb PNGs, pickles
dressed as model files, a torch.export archive cut short, random bytes, and bodies over the
stack's limits (`MAX_REQUEST_BYTES`, `MAX_UPLOAD_BYTES`: the stack the table runs against is
started with them)."""

from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass

import httpx

from tests.e2e.test_models_api import zipped

MAX_REQUEST_BYTES = 262_144  # big enough that a 50,000-deep JSON body (100 kB) is parsed, not cut off
MAX_UPLOAD_BYTES = 4_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The layout of a torch.export.save archive (the names the API looks at, and a few more).
PT2_LAYOUT = {
    "archive/archive_format": b"pt2",
    "archive/archive_version": b"0",
    "archive/byteorder": b"little",
    "archive/models/model.json": b"{}",
    "archive/data/weights/model_weights_config.json": b'{"config": {}}',
    "archive/data/constants/model_constants_config.json": b'{"config": {}}',
    "archive/data/weights/weight_0": bytes(4096),
}


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels: some 70 bytes, no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def zip_bomb(entry_bytes: int) -> bytes:
    """One entry of `entry_bytes` zeros, written in blocks (never whole in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.png", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(entry_bytes >> 20):
                entry.write(block)
    return buffer.getvalue()


class Harmless:
    """Pickles to a call of print: what a hostile checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("a pickle was loaded",))


@dataclass(frozen=True)
class Payloads:
    bomb: bytes
    many_entry_bomb: bytes
    raw_pickle: bytes
    text_pickle: bytes
    torch_checkpoint: bytes
    safetensors: bytes
    random_bytes: bytes
    huge_json: bytes
    oversized_upload: bytes
    streamed_upload: bytes
    streamed_upload_type: str


def build_payloads() -> Payloads:
    """Every payload of the table, built once per module (the bombs take a few seconds)."""
    import torch
    from safetensors.torch import save as save_safetensors

    checkpoint = io.BytesIO()
    torch.save({"weight": torch.zeros(4, 4)}, checkpoint)
    random_bytes = bytearray(random.Random(20240601).randbytes(MAX_UPLOAD_BYTES - 100_000))
    random_bytes[0] = 0x42  # neither a pickle's PROTO opcode nor a zip's "PK"
    streamed = httpx.Request("POST", "http://glassbox/v1/datasets", files={"file": ("big.csv", b"a,b\n" * 1_125_000)})
    return Payloads(
        bomb=zip_bomb(200 << 20),
        many_entry_bomb=zipped({f"z{i:02d}.png": bytes(900_000) for i in range(60)}),
        raw_pickle=pickle.dumps(Harmless(), protocol=4),
        text_pickle=pickle.dumps(Harmless(), protocol=0),
        torch_checkpoint=checkpoint.getvalue(),
        safetensors=save_safetensors({"weight": torch.zeros(256)}),
        random_bytes=bytes(random_bytes),
        huge_json=b'{"kind": "test-lifecycle", "model": "test-model", "metadata": {"x": "' + b"a" * (4 << 20) + b'"}}',
        oversized_upload=b"a,b\n" * 1_125_000,
        streamed_upload=streamed.read(),
        streamed_upload_type=streamed.headers["content-type"],
    )
