"""Dependencies shared by the routers: the stores on app.state, and problem response docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from service.api.problems import PROBLEM_CONTENT_TYPE, Problem
from service.catalogs import DatasetCatalog, ModelCatalog
from service.jobspec import JobKind
from service.jobstore import JobStore

_PROBLEM_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid API key",
    404: "Not found (or owned by another tenant)",
    409: "Conflict with the job's current state",
    413: "Request body too large",
    415: "Unsupported content type",
    416: "The range starts past the end of the file (`Content-Range: bytes */size`)",
    422: "Validation failed; `errors` names each field",
    503: "Redis is unavailable; retry after `Retry-After` seconds",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": Problem, "description": _PROBLEM_DESCRIPTIONS[code], "content": {PROBLEM_CONTENT_TYPE: {}}}
        for code in codes
    }


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


async def get_datasets(request: Request) -> DatasetCatalog:
    return request.app.state.datasets


async def get_kinds(request: Request) -> dict[str, JobKind]:
    return request.app.state.kinds


Store = Annotated[JobStore, Depends(get_store)]
Catalog = Annotated[ModelCatalog, Depends(get_catalog)]
Datasets = Annotated[DatasetCatalog, Depends(get_datasets)]
Kinds = Annotated[dict[str, JobKind], Depends(get_kinds)]
