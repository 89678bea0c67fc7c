"""A job request checked against everything the shared state knows, before it is queued: the
one definition of "can this job run" that the API's create and estimate use, and that a worker
re-runs (with the model's record as loaded) for the checks only a loaded model can answer.

A plan is: the kind, its validated params, the model's catalog record, the records of the
datasets the params name, and the cost estimate. Anything wrong raises InvalidRequest naming
the field and what is allowed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from service.catalogs import Catalog
from service.jobspec import DatasetUse, JobKind
from service.model_refs import ModelRef, ModelRefError, parse_model_ref
from service.settings import Settings
from service.validation import invalid, nested_validation_error


@dataclass(frozen=True)
class JobPlan:
    kind: JobKind
    params: BaseModel
    model_record: dict[str, Any]
    dataset_records: dict[str, dict[str, Any]]

    def cost(self) -> Any | None:
        """The kind's estimate (service.kinds.cost.Estimate), or None for a kind without one."""
        if self.kind.cost is None:
            return None
        return self.kind.cost(self.params, self.model_record, self.dataset_records)


def find_kind(kinds: dict[str, JobKind], name: str) -> JobKind:
    kind = kinds.get(name)
    if kind is None or kind.internal:
        allowed = ", ".join(sorted(k for k, v in kinds.items() if not v.internal)) or "none (no job kinds are installed)"
        raise invalid(["body", "kind"], f"unknown job kind {name!r}; allowed: {allowed}", "unknown-kind")
    return kind


def validate_params(kind: JobKind, raw: dict[str, Any], settings: Settings | None = None) -> BaseModel:
    """The kind's params model, validated with the deployment's limits (the Settings in the
    validation context) when given."""
    try:
        return kind.params_model.model_validate(raw, context={"settings": settings})
    except ValidationError as exc:
        raise nested_validation_error(exc, "params", "invalid-params", kind.params_model) from exc


@dataclass(frozen=True)
class PlanRequest:
    """What a job request says, checked without the shared state: the kind, its validated
    params, the model reference and the datasets the params name (whose records the plan needs:
    a caller can read them all ahead, in one round trip, service/api/admission.py)."""

    kind: JobKind
    params: BaseModel
    model: str  # as the request names it
    model_ref: ModelRef
    dataset_uses: list[DatasetUse]


def read_request(
    kinds: dict[str, JobKind], kind_name: str, raw_params: dict[str, Any], model: str, settings: Settings | None = None
) -> PlanRequest:
    kind = find_kind(kinds, kind_name)
    params = validate_params(kind, raw_params, settings)
    try:
        model_ref = parse_model_ref(model)
    except ModelRefError as exc:
        raise invalid(["body", "model"], str(exc), "invalid-model") from exc
    return PlanRequest(kind, params, model, model_ref, kind.datasets(params) if kind.datasets is not None else [])


def plan_request(request: PlanRequest, tenant: str, models: Catalog, datasets: Catalog) -> JobPlan:
    """The request checked against the catalogs' records of its model and datasets."""
    kind, params, model_ref = request.kind, request.params, request.model_ref
    model_record = models.get(tenant, model_ref.id)
    if model_record is None:
        allowed = ", ".join(models.ids(tenant)) or "none"
        raise invalid(["body", "model"], f"unknown model {request.model!r}; allowed: {allowed}", "unknown-model")
    if kind.check is not None:
        kind.check(params, model_record)
    dataset_records = {
        use.dataset_id: check_dataset(use, tenant, datasets, model_record) for use in request.dataset_uses
    }
    return JobPlan(kind, params, model_record, dataset_records)


def plan_job(
    kinds: dict[str, JobKind],
    kind_name: str,
    raw_params: dict[str, Any],
    model: str,
    tenant: str,
    models: Catalog,
    datasets: Catalog,
    settings: Settings | None = None,
) -> JobPlan:
    return plan_request(read_request(kinds, kind_name, raw_params, model, settings), tenant, models, datasets)


def check_dataset(use: DatasetUse, tenant: str, datasets: Catalog, model_record: dict[str, Any]) -> dict[str, Any]:
    loc = ["body", "params", *use.loc]
    record = datasets.get(tenant, use.dataset_id)
    if record is None:
        allowed = ", ".join(r["id"] for r in datasets.records(tenant) if r.get("kind") == use.kind) or "none"
        raise invalid(loc, f"unknown dataset {use.dataset_id!r}; allowed ({use.kind}): {allowed}", "unknown-dataset")
    if record.get("kind") != use.kind:
        raise invalid(
            loc, f"dataset {use.dataset_id!r} holds {record.get('kind')}; this needs {use.kind}", "wrong-dataset-kind"
        )
    if record.get("status", "ready") != "ready":
        why = f"its indexing failed: {record.get('error')}" if record.get("status") == "failed" else (
            f"it is being indexed (job {record.get('indexing_job')}); submit again once it is ready"
        )
        raise invalid(loc, f"dataset {use.dataset_id!r} is {record.get('status')}: {why}", "dataset-not-ready")
    if use.check is not None:
        use.check(record, model_record)
    return record


def recheck_with_loaded_model(kind: JobKind, params: BaseModel, model_record: dict[str, Any]) -> None:
    """On a worker, once the model is loaded: the kind's check again, now that layers are known
    (a torchvision model's are recorded only by the first job that loads it)."""
    if kind.check is not None:
        kind.check(params, model_record)
