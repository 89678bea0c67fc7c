"""RFC 9457 problem details: every error the API returns has this shape."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.validation import InvalidRequest, with_allowed_names

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://glassbox.dev/problems/"
REDIS_RETRY_AFTER_SECONDS = 5

log = logging.getLogger("glassbox.api")


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str = ""
    errors: list[ValidationIssue] | None = Field(default=None, description="Validation errors.")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str = "",
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail or slug)
        self.status = status
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        cleaned.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return cleaned


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _flat_routes(routes):
    # FastAPI keeps an included router as one entry that wraps the router's own routes.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat_routes(inner.routes)
        elif hasattr(route, "matches"):
            yield route


def allowed_methods(request: Request) -> list[str]:
    """The methods some route serves at this request's path. A path that a literal route names
    (`/v1/jobs/estimate`) is that route's, even though a templated one (`/v1/jobs/{job_id}`)
    would match it too: the document lists only the literal route's methods there."""
    routes = list(_flat_routes(request.app.router.routes))

    def serving(candidates) -> list[str]:
        return [
            method
            for method in HTTP_METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in candidates)
        ]

    literal = [r for r in routes if "{" not in getattr(r, "path", "{") and getattr(r, "path", None) == request.url.path]
    return serving(literal) if literal else serving(routes)


def document_problems(document: dict[str, Any]) -> None:
    """Make the OpenAPI document say what the service does: every error response is
    problem+json, and every operation may answer 422 (validation), 401 (/v1, with keys), 503
    (Redis unavailable) besides what it declares."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    generic = {
        "401": "Missing or invalid API key",
        "422": "Validation failed; `errors` names each field",
        "503": "Redis is unavailable; retry after `Retry-After` seconds",
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "The body cannot be parsed"})
            for code, description in generic.items():
                if code == "401" and not path.startswith("/v1/"):
                    continue
                if path in ("/livez", "/metrics", "/openapi.json") and code != "503":
                    continue
                responses.setdefault(code, {"description": description})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the JSON body the matched route reads, if it reads one: declared as
    a parameter, or read by the endpoint itself (json_body.reads_json_body)."""
    route = request.scope.get("route")
    marked = getattr(getattr(route, "endpoint", None), "json_body_model", None)
    if marked is not None:
        return marked
    field = getattr(route, "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def _invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
        return problem_response(422, exc.slug, exc.title, exc.detail, exc.errors or None)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc.errors())
        body_model = _body_model(request)
        for error in errors:
            if error["loc"][:1] == ["body"]:
                error["msg"] = with_allowed_names({**error, "loc": error["loc"][1:]}, body_model)
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(422, "validation-error", "Request validation failed", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else ""
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; a path served by several
            # routes (GET and POST /v1/jobs) allows all of theirs.
            headers["Allow"] = ", ".join(allowed_methods(request))
            detail = detail or f"Allowed: {headers['Allow']}"
        return problem_response(exc.status_code, slug, HTTPStatus(exc.status_code).phrase, detail, headers=headers)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(redis.exceptions.BusyLoadingError)
    async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return problem_response(
            503,
            "storage-unavailable",
            "Job storage is unavailable",
            "Redis cannot be reached; retry later.",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal-error", "Internal server error", "The error was logged.")
