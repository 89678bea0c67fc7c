"""`/docs`: Swagger UI from the installed swagger-ui-bundle package, so that it renders without
internet (FastAPI's own page loads Swagger UI from a CDN). ReDoc is not served.

swagger-ui-bundle (1.1.0, the newest) ships Swagger UI 4.15.5, which renders OpenAPI 3.0 only:
given FastAPI's 3.1 document it shows "Unable to render this definition" and no operation. The
page therefore reads `/docs/openapi-3.0.json`, the same document with the few 3.1 spellings
FastAPI and pydantic write put in their 3.0 form. `/openapi.json` itself is unchanged.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
DOCUMENT_URL = "/docs/openapi-3.0.json"


def as_openapi_30(node: Any) -> Any:
    """A copy of an OpenAPI 3.1 document (or part of one) in OpenAPI 3.0's spelling."""
    if isinstance(node, list):
        return [as_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_openapi_30(value) for key, value in node.items()}
    if out.get("openapi", "").startswith("3.1"):
        out["openapi"] = "3.0.3"
    for combinator in ("anyOf", "oneOf"):
        variants = out.get(combinator)
        if not isinstance(variants, list) or {"type": "null"} not in variants:
            continue
        rest = [v for v in variants if v != {"type": "null"}]
        out["nullable"] = True
        if len(rest) == 1 and "$ref" not in rest[0]:
            del out[combinator]
            out = {**rest[0], **out}
        else:
            out[combinator] = rest
    if isinstance(out.get("type"), list):  # ["string", "null"]
        types = [t for t in out["type"] if t != "null"]
        out["nullable"] = out.get("nullable", False) or len(types) < len(out["type"])
        out["type"] = types[0] if len(types) == 1 else out["type"]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[inclusive] = out[bound]
            out[bound] = True
    if out.get("type") == "string" and "contentMediaType" in out:  # an uploaded file
        del out["contentMediaType"]
        out["format"] = "binary"
    if isinstance(out.get("examples"), list) and "type" in out:  # a schema's examples, not a media type's
        examples = out.pop("examples")
        if examples:
            out.setdefault("example", examples[0])
    return out


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from the package's files (create the app with docs_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=DOCUMENT_URL,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )

    @app.get(DOCUMENT_URL, include_in_schema=False)
    async def openapi_30() -> JSONResponse:
        return JSONResponse(as_openapi_30(app.openapi()))
