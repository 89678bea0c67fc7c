"""A dataset upload, from its checked files to a published record: used by the API for
`POST /v1/datasets` with files, and by the migration of uploads made before the blob store.

`prepare` checks the files where they are (seekable: the API's spools) and indexes images;
`store` streams them into the blob store under a fresh prefix (size limit and sha256 on the
way), writes the index next to them and publishes the record. Nothing is stored for a file
that fails its checks, and a publish that loses the name to another upload discards its files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from service.datasets.archives import archive_kind
from service.datasets.index import INDEX_NAME, DatasetIndex
from service.datasets.ingest import Archive, Progress, index_archives
from service.uploaded_files import UploadedFiles
from service.uploads import TableSummary, UploadRejected, check_csv, file_size

MAX_SHARDS = 64  # files in one upload; more shards: register them from the store


class NameTaken(Exception):
    """Another upload published the name first."""


@dataclass
class UploadedPart:
    filename: str
    file: IO[bytes]  # seekable


@dataclass
class PreparedDataset:
    parts: list[UploadedPart]
    stored_names: list[str]  # each part's file name in the store
    index: DatasetIndex | None = None  # images
    table: TableSummary | None = None  # a CSV


def prepare(parts: Sequence[UploadedPart], progress: Progress | None = None) -> PreparedDataset:
    """Check the files (and index the images of archives); UploadRejected naming what is wrong."""
    if not parts:
        raise UploadRejected("no file")
    if len(parts) > MAX_SHARDS:
        raise UploadRejected(f"{len(parts)} files; at most {MAX_SHARDS} tar shards in one upload")
    kinds = [archive_kind(p.file, p.filename) for p in parts]
    if len(parts) == 1 and kinds[0] is None:
        return PreparedDataset(list(parts), ["data.csv"], table=check_csv(parts[0].file))
    if len(parts) == 1:
        stored = [f"data.{kinds[0]}"]
    else:
        stored = [f"shard-{number:05d}.tar" for number in range(len(parts))]
    shown = [p.filename for p in parts]
    if len(set(shown)) != len(shown) or not all(shown):
        shown = stored
    archives = [Archive(name, path, file_size(p.file), file=p.file) for name, path, p in zip(shown, stored, parts)]
    return PreparedDataset(list(parts), stored, index=index_archives(archives, {}, progress=progress))


def store(
    files: UploadedFiles,
    prepared: PreparedDataset,
    scope: str,
    dataset_id: str,
    *,
    description: str = "",
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Put the files in the store and publish the record; NameTaken if the name went meanwhile."""
    prefix = files.begin("datasets", scope, dataset_id)
    try:
        stored_files = []
        remaining = max_bytes
        for part, name in zip(prepared.parts, prepared.stored_names):
            info = files.put_file(f"{prefix}/{name}", part.file, remaining)
            remaining = None if remaining is None else remaining - info.size
            stored_files.append({"name": part.filename or name, "key": info.key, "bytes": info.size, "sha256": info.sha256})
        record = dataset_record(dataset_id, description, prefix, stored_files, prepared)
        if prepared.index is not None:
            record["index"] = put_index(files, prefix, prepared.index)
        if not files.publish("datasets", scope, dataset_id, record):
            raise NameTaken(dataset_id)
    except BaseException:
        files.discard(prefix)
        raise
    return record


def dataset_record(
    dataset_id: str, description: str, prefix: str, stored_files: list[dict[str, Any]], prepared: PreparedDataset
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": dataset_id,
        "source": "upload",
        "status": "ready",
        "description": description,
        "prefix": prefix,
        "files": stored_files,
        "bytes": sum(f["bytes"] for f in stored_files),
        "sha256": stored_files[0]["sha256"] if len(stored_files) == 1 else None,
    }
    if prepared.table is not None:
        record.update(kind="table", format="csv", count=prepared.table.count, columns=prepared.table.columns,
                      image_size=None)  # fmt: skip
        return record
    index = prepared.index
    assert index is not None
    index.root = {"store": prefix}
    record.update(kind="images", columns=None, **index.summary())
    return record


def put_index(files: UploadedFiles, prefix: str, index: DatasetIndex) -> dict[str, Any]:
    info = files.store.put_stream(f"{prefix}/{INDEX_NAME}", [index.to_bytes()])
    return {"key": info.key, "bytes": info.size, "sha256": info.sha256}
