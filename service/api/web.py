"""The web page: `/` serves service/static/index.html, `/static/` the files it loads, and
`/atlas/{job id}` (and `/atlas/{job id}/units/{n}`) the atlas view, service/static/atlas.html:
one page whose script reads the path, so that every unit has a link of its own.

Outside the OpenAPI document (the page is a client of the API, not part of it). The page talks
to /v1 with `fetch()` and the API key in the `Authorization` header, never in a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Everything the page needs comes from this origin; artifacts are shown through blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and changes with the service: always revalidate (StaticFiles sends ETags).
    "Cache-Control": "no-cache",
}


class _StaticFiles(StaticFiles):
    async def get_response(self, path, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


AtlasJobId = Annotated[str, PathParam(pattern=r"^[0-9a-z]{1,64}$")]


def _atlas_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "atlas.html", media_type="text/html", headers=PAGE_HEADERS)


def mount_web(app: FastAPI) -> None:
    """Serve the page at `/`, the atlas view under `/atlas/`, and their files under `/static/`."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    # Every atlas URL serves the same page: its script shows the grid or the unit the path names
    # (a job that is not an atlas, or not there, is said so by the page, as the API words it).
    @app.get("/atlas/{job_id}", include_in_schema=False)
    async def atlas(job_id: AtlasJobId) -> FileResponse:
        return _atlas_page()

    @app.get("/atlas/{job_id}/units/{unit}", include_in_schema=False)
    async def atlas_unit(job_id: AtlasJobId, unit: Annotated[int, PathParam(ge=0)]) -> FileResponse:
        return _atlas_page()

    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
