"""Data registered where it already is, never copied: the `source` of `POST /v1/datasets`.

- `file:///absolute/path`: a folder (of images, ImageFolder-style, or of .tar shards), a .zip
  or a .tar, under one of the allowed roots (`GLASSBOX_DATASET_ROOTS`; empty: none). The path
  is resolved (symbolic links followed) before it is compared, so a link that leads out of
  the roots is refused; the workers resolve it again when they index and when they read, and
  refuse links inside a folder that lead out. API and workers must see the same paths.
- `store:sources/<tenant>/<path>`: a key (an archive) or a folder (prefix) in the blob store,
  put there with the store's own tools (`aws s3 cp`, `rclone`, a copy into the file store's
  folder). A tenant may only name its own `sources/<tenant>/` prefix.

The API checks the form, the roots or prefix and that something is there (a 422 naming what
is allowed); indexing, which reads everything, is a `dataset_indexing` job on a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.datasets.index import DatasetIndex
from service.datasets.ingest import Archive, ImageFile, Progress, index_archives, index_files
from service.datasets.storefile import open_blob
from service.storage import BlobStore, RangeNotSatisfiable, validate_key, validate_prefix
from service.uploads import UploadRejected

SOURCE_FORMS = "`file:///absolute/path` (under an allowed root) or `store:sources/<tenant>/<path>`"
SHARD_SUFFIX = ".tar"


class SourceRefused(ValueError):
    """The source cannot be registered; the message names what is allowed."""


@dataclass(frozen=True)
class Source:
    scheme: str  # "file" or "store"
    location: str  # the resolved absolute path, or the store key (or prefix)
    uri: str


def store_prefix(tenant: str) -> str:
    return f"sources/{tenant}"


def parse_source(uri: str, tenant: str, roots: list[str]) -> Source:
    """The source a tenant names, checked against the roots or its prefix (not yet its content)."""
    if uri.startswith("file:"):
        return Source("file", resolve_under_roots(_file_path(uri), roots), uri)
    if uri.startswith("store:"):
        key = uri.removeprefix("store:").strip("/")
        own = store_prefix(tenant)
        try:
            validate_prefix(key)
        except ValueError as exc:
            raise SourceRefused(f"source {uri!r}: {exc}; use store:{own}/<path>") from None
        if key != own and not key.startswith(own + "/"):
            raise SourceRefused(f"source {uri!r} is outside your prefix: a tenant registers only store:{own}/<path>")
        if key == own:
            raise SourceRefused(f"source {uri!r} names your whole prefix; name a folder or archive: store:{own}/<path>")
        return Source("store", key, uri)
    raise SourceRefused(f"source {uri!r}: unknown form; use {SOURCE_FORMS}")


def _file_path(uri: str) -> str:
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or parts.query or parts.fragment:
        raise SourceRefused(f"source {uri!r}: a file source is `file:///absolute/path`")
    return path


def resolve_under_roots(path: str, roots: list[str]) -> str:
    """The real path of `path` when it lies under one of `roots` once links are followed."""
    if not roots:
        raise SourceRefused(
            "file sources are off here: no dataset roots are allowed (GLASSBOX_DATASET_ROOTS is empty); "
            "use store:sources/<tenant>/<path>"
        )
    allowed = ", ".join(roots)
    real = os.path.realpath(path)
    # Outside first: whether a path outside the roots exists is none of the caller's business.
    if containing_root(real, roots) is None:
        if containing_root(os.path.normpath(path), roots) is not None:
            raise SourceRefused(
                f"{path} leads out of the allowed roots through a symbolic link (to {real}); allowed roots: {allowed}"
            )
        raise SourceRefused(f"{path} is outside the allowed roots: {allowed}")
    if not os.path.exists(real):
        raise SourceRefused(f"{path} does not exist (allowed roots: {allowed}; the API and the workers see the same paths)")
    return real


def containing_root(real_path: str, roots: list[str]) -> str | None:
    for root in roots:
        top = os.path.realpath(root)
        if real_path == top or real_path.startswith(top.rstrip("/") + "/"):
            return top
    return None


def check_store_source(store: BlobStore, source: Source) -> None:
    """Something is under the key: an archive, or a folder of blobs."""
    if store.head(source.location) is not None:
        return
    if next(iter(store.list_blobs(source.location)), None) is None:
        raise SourceRefused(f"nothing is stored under {source.uri!r}; put the data there first")


# ---- indexing (on a worker) -------------------------------------------------------------------


def index_source(source: Source, store: BlobStore, roots: list[str], progress: Progress | None = None) -> DatasetIndex:
    if source.scheme == "file":
        return _index_path(resolve_under_roots(source.location, roots), roots, progress)
    return _index_store(store, source.location, progress)


def _index_path(path: str, roots: list[str], progress: Progress | None) -> DatasetIndex:
    root = {"path": path}
    if os.path.isfile(path):
        archive = Archive(Path(path).name, "", os.path.getsize(path), opener=lambda: open(path, "rb"))
        return index_archives([archive], root, progress=progress)
    files = list(_walk(path, roots))
    shards = [
        Archive(f.path, f.path, f.size, opener=lambda f=f: open(os.path.join(path, f.path), "rb"))
        for f in files if f.path.endswith(SHARD_SUFFIX)
    ]  # fmt: skip
    if shards:
        return index_archives(shards, root, progress=progress)

    def read_file(relative: str, limit: int) -> bytes:
        with open(os.path.join(path, relative), "rb") as file:
            return file.read(limit)

    return index_files(files, root, read_file, progress=progress)


def _walk(top: str, roots: list[str]):
    """Every regular file under `top` (relative paths, in name order); links that lead out of
    the roots, devices and FIFOs refused; linked folders not followed (no loops)."""
    for folder, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            full = os.path.join(folder, name)
            relative = os.path.relpath(full, top).replace(os.sep, "/")
            if os.path.islink(full) and containing_root(os.path.realpath(full), roots) is None:
                raise UploadRejected(f"file {relative!r} is a symbolic link leading out of the allowed roots")
            if name in dirnames:
                continue
            if not os.path.isfile(full):
                raise UploadRejected(f"file {relative!r} is not a regular file (a device, FIFO or socket)")
            yield ImageFile(relative, os.path.getsize(full))


def _index_store(store: BlobStore, key: str, progress: Progress | None) -> DatasetIndex:
    root = {"store": key}
    meta = store.head(key)
    if meta is not None:
        archive = Archive(key.rsplit("/", 1)[-1], "", meta.size, opener=lambda: open_blob(store, key, meta.size)[0])
        return index_archives([archive], root, progress=progress)
    files = [ImageFile(m.key[len(key) + 1 :], m.size) for m in sorted(store.list_blobs(key), key=lambda m: m.key)]
    for file in files:
        try:
            validate_key(f"{key}/{file.path}")
        except ValueError as exc:
            raise UploadRejected(f"file {file.path!r} cannot be read by its name: {exc}") from None
    if not files:
        raise UploadRejected(f"nothing is stored under store:{key}")
    shards = [
        Archive(f.path, f.path, f.size, opener=lambda f=f: open_blob(store, f"{key}/{f.path}", f.size)[0])
        for f in files if f.path.endswith(SHARD_SUFFIX)
    ]  # fmt: skip
    if shards:
        return index_archives(shards, root, progress=progress)

    def read_file(relative: str, limit: int) -> bytes:
        try:
            return store.open_read(f"{key}/{relative}", 0, max(limit, 1)).read_all()[:limit]
        except RangeNotSatisfiable:  # an empty file
            return b""

    return index_files(files, root, read_file, progress=progress)
