"""Blob keys and byte ranges, checked so that neither backend can be walked out of its root or
prefix: keys are relative POSIX paths chosen by the service, never by a client verbatim."""

from __future__ import annotations

import re

from service.storage.errors import RangeNotSatisfiable

MAX_KEY_LENGTH = 512
# Segments may not start with "." (no `.`/`..`, no hidden files), which also keeps the file
# backend's temporary names (under `.tmp/`) out of reach of any key.
_SEGMENT = re.compile(r"[A-Za-z0-9_@=+-][A-Za-z0-9._@=+-]*")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative POSIX path, else raise ValueError saying why."""
    if not isinstance(key, str) or not key:
        raise ValueError("a blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key is longer than {MAX_KEY_LENGTH} characters")
    if "\x00" in key:
        raise ValueError(f"blob key {key!r} contains a NUL character")
    if "\\" in key:
        raise ValueError(f"blob key {key!r} contains a backslash; keys are POSIX paths")
    if key.startswith("/"):
        raise ValueError(f"blob key {key!r} is absolute; keys are relative paths")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"blob key {key!r} has an empty, `.` or `..` segment")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"blob key {key!r}: segment {segment!r} may use letters, digits and `._@=+-`, "
                "and may not start with `.`"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix is "" (everything) or a key naming a folder; one trailing "/" is allowed.

    Prefixes match whole path segments: `jobs/12` covers `jobs/12/a`, never `jobs/123/a`.
    """
    if prefix == "":
        return ""
    return validate_key(prefix[:-1] if prefix.endswith("/") else prefix)


def resolve_range(key: str, size: int, start: int, end: int | None) -> tuple[int, int]:
    """(start, end) with `end` exclusive and clamped to `size`, as HTTP Range wants it.

    A whole read (start 0, no end) of an empty blob is fine; any other range must start inside it.
    """
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"byte range ({start}, {end}) is invalid: need 0 <= start < end")
    if end is None and start == 0:
        return 0, size
    if start >= size:
        raise RangeNotSatisfiable(key, start, size)
    return start, size if end is None else min(end, size)


def require_folder_prefix(prefix: str) -> str:
    prefix = validate_prefix(prefix)
    if not prefix:
        raise ValueError("delete_prefix needs a non-empty prefix; it never deletes the whole store")
    return prefix
