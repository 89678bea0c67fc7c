"""The job kinds every deployment runs (see service/plugins.py for how kinds are declared)."""

from pydantic import BaseModel, ConfigDict

from service.jobspec import JobKind


class ModelInspectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


MODEL_INSPECTION = "model_inspection"

JOB_KINDS = [
    JobKind(
        name=MODEL_INSPECTION,
        params_model=ModelInspectionParams,
        handler="worker.inspection:run_model_inspection",
        description="Load the model on a worker, run a forward pass on an input that matches its "
        "input contract, and record its layers (GET /v1/models/{id} shows them). Uploads start "
        "one by themselves; run one to list the layers of a torchvision model before using it.",
    )
]
