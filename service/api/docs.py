"""`/docs`: Swagger UI from files installed with the package, so that it renders without internet
(FastAPI's own page loads Swagger UI from a CDN). ReDoc is not served.

The files come from the `fastapi-offline` package (its bundled Swagger UI 5, which renders the
OpenAPI 3.1 document FastAPI writes); only its static files are used, not its app class.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
SWAGGER_UI_FILES = Path(fastapi_offline.__file__).parent / "static"


def mount_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Serve Swagger UI at /docs from the package's files (create the app with docs_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(SWAGGER_UI_FILES)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url="data:,",
        )
