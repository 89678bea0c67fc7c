"""Which blob store a process uses, from its Settings (`GLASSBOX_BLOB_URL` and friends)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from service.storage.base import BlobStore
from service.storage.file_store import FileBlobStore
from service.storage.keys import validate_prefix

if TYPE_CHECKING:
    from service.settings import Settings

BLOB_URL_FORMS = "`file:///absolute/path` or `s3://bucket` or `s3://bucket/prefix`"


def parse_blob_url(url: str) -> tuple[str, str, str]:
    """("file", path, "") or ("s3", bucket, prefix); ValueError naming the allowed forms."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/") or parts.query:
            raise ValueError(f"blob URL {url!r}: a file URL needs an absolute path; use {BLOB_URL_FORMS}")
        return "file", path, ""
    if parts.scheme == "s3":
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"blob URL {url!r}: an s3 URL needs a bucket; use {BLOB_URL_FORMS}")
        prefix = parts.path.strip("/")
        try:
            validate_prefix(prefix)
        except ValueError as error:
            raise ValueError(f"blob URL {url!r}: bad prefix ({error}); use {BLOB_URL_FORMS}") from None
        return "s3", parts.netloc, prefix
    raise ValueError(f"blob URL {url!r}: unknown scheme; use {BLOB_URL_FORMS}")


def default_blob_url(settings: Settings) -> str:
    return (Path(settings.data_dir).resolve() / "blobs").as_uri()


def open_blob_store(settings: Settings) -> BlobStore:
    """The store `settings` name: a directory by default (under `data_dir`), or an S3 bucket."""
    scheme, location, prefix = parse_blob_url(settings.blob_url or default_blob_url(settings))
    if scheme == "file":
        return FileBlobStore(location, flush_interval=settings.artifact_flush_seconds)
    endpoint = settings.s3_endpoint_url or None
    if endpoint and endpoint.startswith("http://") and not settings.s3_allow_http:
        raise ValueError(f"the S3 endpoint {endpoint!r} is plain http: set GLASSBOX_S3_ALLOW_HTTP=true to allow it")
    from service.storage.s3_store import S3BlobStore  # obstore is loaded only for s3 stores

    return S3BlobStore(location, prefix, endpoint_url=endpoint, allow_http=settings.s3_allow_http)
