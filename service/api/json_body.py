"""The JSON body of a job request, read by the create endpoint itself.

FastAPI reads a declared body parameter through its dependency machinery, which on the create
path cost more API CPU than the job's plan, its record and its Redis script together (about a
tenth of a create, bench/scaling.py). FastAPI's documented way around it ("Path Operation
Advanced Configuration": read the request, validate with the pydantic model, declare the body in
`openapi_extra`) is used here, and the errors are FastAPI's own, in its order: 415 for another
media type, `json_invalid` at `body.<position>` for bad JSON, 400 for JSON that cannot be
parsed at all (nesting or an integer too long), `missing` at `body` for an empty body, and the
model's errors under `body`. A header the endpoint reads is checked the same way
(`read_header`: FastAPI's errors, reported with the body's). The OpenAPI document says the same
as for declared parameters (`json_body_openapi`, `header_openapi`), and problems.py finds the
model for its "allowed: ..." hints by the endpoint's mark (`reads_json_body`). Estimate keeps
FastAPI's own reading: tests compare the two answer for answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from service.api.problems import ProblemError

Model = TypeVar("Model", bound=BaseModel)
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def check_json_media_type(request: Request) -> None:
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ProblemError(
            415, "unsupported-media-type", f"Send the job as `application/json` (got {media_type or 'nothing'!r})."
        )


async def read_json_body(request: Request, model: type[Model], parameter_errors: Sequence[dict] = ()) -> Model:
    """The body as `model` (the caller has checked the media type first, then whatever else
    comes before the body). `parameter_errors`: the request's header or query errors, reported
    with the body's (FastAPI reports them in one 422)."""
    try:
        raw = await request.body()
        data = await request.json() if raw else None
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except HTTPException:  # the body size limit (body_size.py)
        raise
    except Exception as exc:  # RecursionError, an integer past Python's digit limit
        raise HTTPException(400, "There was an error parsing the body") from exc
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([*parameter_errors, missing])
    try:
        # from_attributes as FastAPI validates (it only changes the error for a non-object body)
        body = model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError([*parameter_errors, *errors], body=data) from None
    if parameter_errors:
        raise RequestValidationError(list(parameter_errors), body=data)
    return body


def read_header(request: Request, name: str, adapter: TypeAdapter[Any]) -> tuple[Any, list[dict]]:
    """Header `name` (None when absent) checked by `adapter`, and its errors as FastAPI gives them
    for a declared Header parameter."""
    value = request.headers.get(name)
    if value is None:
        return None, []
    try:
        return adapter.validate_python(value), []
    except ValidationError as exc:
        return None, [{**error, "loc": ("header", name, *error["loc"])} for error in exc.errors(include_url=False)]


def header_openapi(name: str, adapter: TypeAdapter[Any], description: str, title: str) -> dict[str, Any]:
    """The OpenAPI parameter FastAPI writes for an optional Header parameter of this type."""
    schema = {**adapter.json_schema(), "description": description, "title": title}
    return {"description": description, "in": "header", "name": name, "required": False, "schema": schema}


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for an endpoint that reads `model` with read_json_body (the model itself
    must be in the document's schemas: another endpoint declaring it, or the app's openapi())."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def reads_json_body(model: type[BaseModel]) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint as reading `model` itself (problems.py reads the mark for its hints)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.json_body_model = model  # type: ignore[attr-defined]
        return endpoint

    return mark
