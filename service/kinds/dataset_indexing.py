"""The `dataset_indexing` job: a worker reads a registered dataset where it is (a folder or
archives under an allowed root, or in the blob store), checks every image and writes its index,
so that the API stays responsive however big the source. Started by `POST /v1/datasets` with a
`source`, never by a client directly."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.jobspec import JobKind
from service.validation import invalid

DATASET_INDEXING = "dataset_indexing"


class DatasetIndexingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=100, description="The registered dataset to index.")


def refuse_client_jobs(params: DatasetIndexingParams, record: dict[str, Any]) -> None:
    raise invalid(
        ["body", "kind"],
        "dataset_indexing jobs are started by POST /v1/datasets with a `source` (register the data again "
        "to index it again)",
        "invalid-kind",
    )


JOB_KINDS = [
    JobKind(
        name=DATASET_INDEXING,
        params_model=DatasetIndexingParams,
        handler="worker.indexing:run_dataset_indexing",
        description="Index a registered dataset where it lies: every image checked, its name, size, class "
        "label and place recorded, so that jobs read any image without scanning (GET /v1/datasets/{id} "
        "shows it `pending`, then `ready` with its counts and labels, or `failed` with the reason). "
        "Started by POST /v1/datasets with a `source`.",
        check=refuse_client_jobs,
    )
]
