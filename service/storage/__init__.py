"""The blob store: uploaded models and datasets, artifacts and indexes, out of Redis.

One interface (`BlobStore`), two backends: `FileBlobStore` (a directory) and `S3BlobStore`
(any S3-compatible store through obstore; imported only when used). `open_blob_store(settings)`
picks one from `GLASSBOX_BLOB_URL`.
"""

from service.storage.base import BlobStore
from service.storage.config import open_blob_store, parse_blob_url
from service.storage.errors import BlobNotFound, BlobTooLarge, RangeNotSatisfiable
from service.storage.file_store import FileBlobStore
from service.storage.keys import validate_key, validate_prefix
from service.storage.streams import DEFAULT_CHUNK_SIZE, AsyncBlobReader, BlobInfo, BlobMeta, BlobReader
from service.storage.sweep import SweepResult, sweep_orphans

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "AsyncBlobReader",
    "BlobInfo",
    "BlobMeta",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "FileBlobStore",
    "RangeNotSatisfiable",
    "SweepResult",
    "open_blob_store",
    "parse_blob_url",
    "sweep_orphans",
    "validate_key",
    "validate_prefix",
]
