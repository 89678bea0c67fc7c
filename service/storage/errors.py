"""What a blob store operation can fail with, beyond I/O errors."""

from __future__ import annotations


class BlobTooLarge(Exception):
    """A put delivered more bytes than its `max_bytes`; nothing was stored."""

    def __init__(self, key: str, limit: int):
        super().__init__(f"blob {key!r} is larger than the limit of {limit} bytes")
        self.key = key
        self.limit = limit


class BlobNotFound(LookupError):
    def __init__(self, key: str):
        super().__init__(f"no blob under key {key!r}")
        self.key = key


class RangeNotSatisfiable(ValueError):
    """The requested range starts at or after the end of the blob (HTTP 416)."""

    def __init__(self, key: str, start: int, size: int):
        super().__init__(f"range starting at byte {start} is outside blob {key!r} of {size} bytes")
        self.key = key
        self.start = start
        self.size = size
