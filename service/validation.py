"""Why a request cannot be done, said without HTTP: the job kinds' checks raise `InvalidRequest`,
which the API answers as a 422 problem and a worker records as an `invalid-params` failure.

Each issue is located like FastAPI's own validation errors (`loc` from the request body:
`["body", "params", "layer"]`) and typed with a slug (`unknown-layer`, `limit-exceeded`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

DEFAULT_TITLE = "Request validation failed"


class InvalidRequest(ValueError):
    def __init__(
        self, slug: str, detail: str, errors: list[dict[str, Any]] | None = None, *, title: str = DEFAULT_TITLE
    ):
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.errors = errors or []
        self.title = title


def invalid(loc: list[str | int], msg: str, slug: str = "validation-error") -> InvalidRequest:
    """An error about one field."""
    return InvalidRequest(slug, msg, [{"loc": loc, "msg": msg, "type": slug}])


def nested_validation_error(
    exc: ValidationError, field: str, slug: str, model: type[BaseModel] | None = None
) -> InvalidRequest:
    """The error for a JSON value validated inside the body (`params`, a multipart `manifest`),
    its errors located under `["body", field, ...]`; with the `model` it was validated as, an
    unknown name is answered with the names allowed where it stands."""
    errors = [
        {"loc": ["body", field, *e["loc"]], "msg": with_allowed_names(e, model), "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    detail = "; ".join(f"{field}.{'.'.join(map(str, e['loc'][2:]))}: {e['msg']}" for e in errors[:5])
    return InvalidRequest(slug, detail, errors)


def with_allowed_names(error: Any, model: type[BaseModel] | None) -> str:
    if error["type"] != "extra_forbidden" or model is None:
        return error["msg"]
    names = allowed_names(model, error["loc"][:-1])
    return f"{error['msg']}: {error['loc'][-1]!r}; allowed: {', '.join(names)}" if names else error["msg"]


def allowed_names(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the object at `loc` inside `model` (a pydantic error location: field
    names, list indexes, and the tag or class name of the union member tried), or None where
    that object is not one known model."""
    candidates: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the item's models are already the candidates
        members = [c for c in candidates if part == c.__name__ or part in _tags(c)]
        if len(candidates) > 1 and members:
            candidates = members
            continue
        candidates = [m for c in candidates if part in c.model_fields for m in _models_in(c.model_fields[part].annotation)]
        if not candidates:
            return None
    if len(candidates) != 1:
        return None
    return [info.alias or name for name, info in candidates[0].model_fields.items()]


def _tags(model: type[BaseModel]) -> set[Any]:
    """The values of single-valued Literal fields: what a discriminated union names a member by."""
    tags = set()
    for info in model.model_fields.values():
        if get_origin(info.annotation) is Literal and len(get_args(info.annotation)) == 1:
            tags.add(get_args(info.annotation)[0])
    return tags


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]
