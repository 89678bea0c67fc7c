"""Job ids, request fingerprints and page tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from typing import Any

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
JOB_ID_LENGTH = 26


def new_job_id(now: float | None = None) -> str:
    """A ULID-style id: 10 characters of milliseconds, then 16 random ones.

    Ids sort by creation time as plain strings, which is what lets listing page through a
    sorted set by id with no duplicates or gaps while new jobs arrive.
    """
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(JOB_ID_LENGTH):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def request_fingerprint(body: dict[str, Any]) -> str:
    """What an Idempotency-Key is bound to: the canonical JSON of the request body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The id the next page starts after; ValueError if the token was not made by us."""
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("not a page token returned by this service") from exc
    if not isinstance(after, str) or len(after) != JOB_ID_LENGTH:
        raise ValueError("not a page token returned by this service")
    return after
