"""Answering a GET of a blob-store file: streamed (one chunk in memory per client; a small file
read whole, SMALL_BODY_BYTES), with a strong ETag, `If-None-Match`, single `Range` requests (206,
or 416 with the size), HEAD without opening the file, and, for an S3 store with presigned
downloads on, a redirect to a short-lived URL.

Starlette's FileResponse does ranges for local files only; the blob store may be S3, so the
few lines of RFC 9110 ranges are here.
"""

from __future__ import annotations

import re

from fastapi import Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from service.api.problems import ProblemError
from service.settings import Settings
from service.storage import BlobNotFound, BlobStore, RangeNotSatisfiable

IMMUTABLE = "private, max-age=31536000, immutable"
# A body up to this size is read whole and answered at once (most artifacts: result.json, PNGs,
# small arrays): a stream's disconnect watcher and its trips to a worker thread cost the API
# more than the bytes. Larger ones stream, one chunk in memory per client.
SMALL_BODY_BYTES = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single satisfiable byte range; None for a whole-file answer
    (no header, several ranges, or a header we do not understand, as RFC 9110 allows)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            raise RangeNotSatisfiable("", size, size)
        return max(0, size - count), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable("", start, size)
    end = size if not last else min(size, int(last) + 1)
    if end <= start:
        return None
    return start, end


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    return bool(if_none_match) and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")])


async def blob_response(
    request: Request,
    store: BlobStore,
    settings: Settings,
    key: str,
    *,
    size: int,
    sha256: str,
    media_type: str,
    filename: str,
) -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    if etag_matches(etag, request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{filename.rpartition("/")[2]}"'
    if settings.presign_downloads and request.method == "GET":
        url = await store.presigned_get_url_async(key, settings.presign_expires_seconds)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"ETag": etag, "Cache-Control": "no-store"})
    if_range = request.headers.get("if-range")
    try:
        span = parse_range(request.headers.get("range"), size) if if_range in (None, etag) else None
    except RangeNotSatisfiable:
        raise ProblemError(
            416, "range-not-satisfiable", f"The file has {size} bytes.", headers={"Content-Range": f"bytes */{size}"}
        ) from None
    status, (start, end) = (206, span) if span else (200, (0, size))
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD" or end == start:  # headers only, or an empty file
        return Response(status_code=status, headers=headers, media_type=media_type)
    small = end - start <= SMALL_BODY_BYTES
    try:
        if small:
            stored, body = await store.read_range_async(key, start, end)
        else:
            reader = await store.open_read_async(key, start, end)
            stored = reader.size
    except BlobNotFound:
        raise ProblemError(404, "file-gone", "The file is no longer stored (it expired or was deleted).") from None
    except RangeNotSatisfiable:  # shorter than recorded
        stored = -1
    if stored != size:
        # A crash of the machine before the file reached the disk (artifacts are fsynced in the
        # background: GLASSBOX_ARTIFACT_FLUSH_SECONDS): never serve it cut short.
        if not small and stored >= 0:
            await reader.aclose()
        raise ProblemError(
            404, "file-gone",
            f"The stored file has {'another size' if stored >= 0 else 'fewer bytes'} than the {size} bytes recorded "
            "(it was lost in a crash of the machine); run the job again: with the same `seed` it gives the same "
            "result.",
        )  # fmt: skip
    if small:
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        reader, status_code=status, headers=headers, media_type=media_type, background=BackgroundTask(reader.aclose)
    )
