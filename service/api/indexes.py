"""/v1/indexes: the tenant's activation indexes (built by `activation_index` jobs, and by
deconvnet jobs on first use): what is indexed, its size, what it cost; delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from service.api.auth import Tenant
from service.api.deps import problem_responses
from service.api.head import add_head_routes
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.indexes import IndexCatalog

router = APIRouter(prefix="/v1", tags=["indexes"], generate_unique_id_function=camel_case_operation_id)


class IndexInfo(BaseModel):
    id: str
    model: str = Field(description="The model id as the building job named it (with its weights query).")
    dataset: str
    layer: str
    layer_shape: list[int]
    k: int = Field(description="Top (and bottom) images kept per channel.")
    images: int = Field(description="Images scanned.")
    bytes: int = Field(description="Size of the statistics file in the blob store.")
    sha256: str
    built_by: str = Field(description="The job that built it.")
    built_at: float = Field(description="When, in seconds since the epoch.")
    build_seconds: float = Field(description="Time of its merge step (the scan's time is in the shards' records).")


async def get_indexes(request: Request) -> IndexCatalog:
    return request.app.state.indexes


Indexes = Annotated[IndexCatalog, Depends(get_indexes)]
IndexId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="The index id.")]


def _info(record: dict[str, Any]) -> IndexInfo:
    return IndexInfo.model_validate({k: v for k, v in record.items() if k in IndexInfo.model_fields})


@router.get("/indexes", response_model=list[IndexInfo], summary="The tenant's activation indexes",
            responses=problem_responses(401, 503))  # fmt: skip
def list_indexes(tenant: Tenant, indexes: Indexes) -> list[IndexInfo]:
    return [_info(record) for record in indexes.records(tenant)]


@router.get("/indexes/{index_id}", response_model=IndexInfo, summary="One activation index",
            responses=problem_responses(401, 404, 503))  # fmt: skip
def get_index(index_id: IndexId, tenant: Tenant, indexes: Indexes) -> IndexInfo:
    record = indexes.get(tenant, index_id)
    if record is None:
        raise ProblemError(404, "index-not-found", f"No index {index_id!r}; GET /v1/indexes lists them.")
    return _info(record)


@router.delete("/indexes/{index_id}", status_code=204, summary="Delete an activation index (its file goes at the next sweep)",
               responses=problem_responses(401, 404, 503))  # fmt: skip
def delete_index(index_id: IndexId, tenant: Tenant, indexes: Indexes) -> Response:
    if not indexes.delete(tenant, index_id):
        raise ProblemError(404, "index-not-found", f"No index {index_id!r}.")
    return Response(status_code=204)


add_head_routes(router)
