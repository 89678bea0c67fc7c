"""/v1/models and /v1/datasets: what jobs can look into, and what with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from service.api.deps import problem_responses
from service.auth import Tenant
from service.catalogspec import DatasetInfo, ModelInfo, ModelSummary
from service.model_catalog import ModelCatalog
from service.problems import ProblemError

router = APIRouter(prefix="/v1")


async def get_datasets(request: Request) -> ModelCatalog:
    return request.app.state.datasets


async def get_models(request: Request) -> ModelCatalog:
    return request.app.state.catalog


Models = Annotated[ModelCatalog, Depends(get_models)]
Datasets = Annotated[ModelCatalog, Depends(get_datasets)]


@router.get("/models", response_model=list[ModelSummary], tags=["models"], responses=problem_responses(401, 503))
def list_models(tenant: Tenant, models: Models) -> list[ModelSummary]:
    return [ModelSummary.model_validate(r) for r in models.records(tenant)]


@router.get(
    "/models/{model_id:path}",
    response_model=ModelInfo,
    tags=["models"],
    summary="A model: input contract and layers in execution order",
    responses=problem_responses(401, 404, 503),
)
def get_model(model_id: Annotated[str, Path(description="e.g. `shapes-cnn`, `torchvision/vgg16`")],
              tenant: Tenant, models: Models) -> ModelInfo:
    record = models.get(tenant, model_id.partition("?")[0])
    if record is None:
        raise ProblemError(404, "model-not-found", f"No model {model_id!r}; GET /v1/models lists them.")
    return ModelInfo.model_validate(record)


@router.get("/datasets", response_model=list[DatasetInfo], tags=["datasets"], responses=problem_responses(401, 503))
def list_datasets(tenant: Tenant, datasets: Datasets) -> list[DatasetInfo]:
    return [DatasetInfo.model_validate(r) for r in datasets.records(tenant)]


@router.get(
    "/datasets/{dataset_id}",
    response_model=DatasetInfo,
    tags=["datasets"],
    responses=problem_responses(401, 404, 503),
)
def get_dataset(dataset_id: str, tenant: Tenant, datasets: Datasets) -> DatasetInfo:
    record = datasets.get(tenant, dataset_id)
    if record is None:
        raise ProblemError(404, "dataset-not-found", f"No dataset {dataset_id!r}; GET /v1/datasets lists them.")
    return DatasetInfo.model_validate(record)
