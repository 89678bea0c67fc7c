"""Removal of orphans: blobs that no record points at, left by a crash between a put and the
publish of its record (the put comes first, so a crash never leaves a record without a blob)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.storage.base import BlobStore


@dataclass
class SweepResult:
    deleted: list[str] = field(default_factory=list)
    abandoned_uploads: int = 0


def sweep_orphans(
    store: BlobStore, prefix: str, older_than_seconds: float, is_referenced: Callable[[str], bool]
) -> SweepResult:
    """Delete the blobs under `prefix` older than `older_than_seconds` that `is_referenced`
    disowns, and partial uploads as old.

    The age is the guard against a put whose record is about to be published: it must exceed
    the longest time between a put's end and its record's publish.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    result = SweepResult()
    for meta in list(store.list_blobs(prefix)):
        if meta.last_modified < cutoff and not is_referenced(meta.key):
            store.delete(meta.key)
            result.deleted.append(meta.key)
    result.abandoned_uploads = store.discard_abandoned_uploads(older_than_seconds)
    return result
