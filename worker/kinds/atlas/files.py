"""Where an atlas's chunks live in the blob store, and the unit numbers each chunk keeps.

A chunk's folder `{cache}/{chunk}/` holds `units/<n>/exemplars.png`, `units/<n>/fv.png` and
`units/<n>/best.png` per unit, then `chunk.json` (the units' numbers), written last: a chunk is
stored when its chunk.json exists, and a worker killed before that leaves a folder that the
retried step overwrites.
"""

from __future__ import annotations

import json
from typing import Any

from service.storage import BlobStore

CHUNK_FILE = "chunk.json"
UNIT_PICTURES = ("exemplars.png", "fv.png", "best.png")


def chunk_names(units: list[int], per_chunk: int) -> dict[str, list[int]]:
    """chunk name -> its units, in the atlas's unit order."""
    return {
        f"chunk-{start // per_chunk:04d}": units[start : start + per_chunk] for start in range(0, len(units), per_chunk)
    }


def unit_file(cache: str, chunk: str, unit: int, name: str) -> str:
    return f"{cache}/{chunk}/units/{unit}/{name}"


def write_chunk(
    store: BlobStore, cache: str, chunk: str, pictures: dict[tuple[int, str], bytes], entries: list[dict[str, Any]]
) -> None:
    for (unit, name), data in pictures.items():
        store.put_bytes(unit_file(cache, chunk, unit, name), data)
    store.put_bytes(f"{cache}/{chunk}/{CHUNK_FILE}", json.dumps({"units": entries}).encode())


def read_chunk(store: BlobStore, cache: str, chunk: str) -> list[dict[str, Any]]:
    return json.loads(store.get_bytes(f"{cache}/{chunk}/{CHUNK_FILE}"))["units"]
