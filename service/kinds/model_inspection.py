"""The job kinds every deployment runs (see service/plugins.py for how kinds are declared)."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from service.jobspec import JobKind
from service.kinds.cost import Estimate, Rates, estimate, network


class ModelInspectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


MODEL_INSPECTION = "model_inspection"


def model_inspection_cost(params: ModelInspectionParams, record: dict[str, Any], datasets: dict[str, Any]) -> Estimate:
    """Loading the model (a torchvision architecture is built, an upload read; built-ins are
    loaded when a worker starts), then one forward pass recording every layer."""
    source = record.get("source")
    net = network(record)

    def work(rates: Rates) -> float:
        if source == "torchvision":
            load = rates.torchvision_load
        elif source == "upload":
            load = int(record.get("bytes") or 0) * rates.load_byte
        else:
            load = 0.0
        return rates.job + load + net.forward(rates, 1)

    loading = {"torchvision": "building the torchvision model", "upload": "reading the uploaded weights"}
    return estimate(work, f"{loading.get(source, 'the model already loaded')}, then one forward pass ({net.describe()})")

JOB_KINDS = [
    JobKind(
        name=MODEL_INSPECTION,
        params_model=ModelInspectionParams,
        handler="worker.inspection:run_model_inspection",
        description="Load the model on a worker, run a forward pass on an input that matches its "
        "input contract, and record its layers (GET /v1/models/{id} shows them). Uploads start "
        "one by themselves; run one to list the layers of a torchvision model before using it.",
        cost=model_inspection_cost,
    )
]
