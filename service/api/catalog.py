"""/v1/models: what jobs can look into. An upload is checked where Starlette spooled it, then
streamed to the blob store (service/uploaded_files.py) and inspected by a worker; /v1/datasets
is in service/api/datasets.py."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from pydantic import ValidationError

from service.api.auth import Tenant
from service.api.deps import Store, problem_responses
from service.api.head import add_head_routes
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.catalogs import BUILTIN_SCOPE, ModelCatalog
from service.catalogspec import ModelInfo, ModelManifest, ModelSummary
from service.kinds.model_inspection import MODEL_INSPECTION
from service.model_refs import TORCHVISION_PREFIX
from service.uploaded_files import UploadedFiles
from service.uploads import UploadRejected, check_model_file
from service.validation import invalid, nested_validation_error

router = APIRouter(prefix="/v1", generate_unique_id_function=camel_case_operation_id)

BUILTIN_ARCHITECTURES = ("shapes-cnn", "tabular-mlp")
STORED_MODEL_NAMES = {"exported_program": "model.pt2", "safetensors": "weights.safetensors"}


async def get_models(request: Request) -> ModelCatalog:
    return request.app.state.catalog


async def get_uploaded_files(request: Request) -> UploadedFiles:
    return request.app.state.uploaded_files


Models = Annotated[ModelCatalog, Depends(get_models)]
Files = Annotated[UploadedFiles, Depends(get_uploaded_files)]


def rejected(exc: UploadRejected, field: str = "file") -> ProblemError:
    return ProblemError(
        422, exc.slug, str(exc), title="Upload refused", errors=[{"loc": ["body", field], "msg": str(exc), "type": exc.slug}]
    )


# ---- models ------------------------------------------------------------------------------


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
def get_model(
    model_id: Annotated[str, Path(description="e.g. `shapes-cnn`, `torchvision/vgg16`")], tenant: Tenant, models: Models
) -> ModelInfo:
    record = models.get(tenant, model_id.partition("?")[0])
    if record is None:
        raise ProblemError(404, "model-not-found", f"No model {model_id!r}; GET /v1/models lists them.")
    return ModelInfo.model_validate(record)


@router.post(
    "/models",
    status_code=202,
    response_model=ModelInfo,
    tags=["models"],
    summary="Upload a model (multipart: `file` + `manifest` JSON)",
    description="The file is a `torch.export` archive (.pt2, format `exported_program`) or a "
    "safetensors state dict (format `safetensors`, with the manifest's `architecture`). Pickled "
    "checkpoints are refused. The model is `pending` until a worker has loaded it and run a "
    "forward pass (the `model_inspection` job named in `inspection_job`); then `ready` with its "
    "layers, or `failed` with the reason.",
    responses=problem_responses(401, 409, 413, 422, 503),
)
def upload_model(
    request: Request,
    response: Response,
    tenant: Tenant,
    models: Models,
    files: Files,
    store: Store,
    file: Annotated[UploadFile, File(description="The .pt2 or .safetensors file.")],
    manifest: Annotated[str, Form(description="The manifest, a JSON document (see ModelManifest).")],
) -> ModelInfo:
    try:
        parsed = ModelManifest.model_validate(json.loads(manifest))
    except json.JSONDecodeError as exc:
        raise invalid(["body", "manifest"], f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise invalid(["body", "manifest"], "nested too deeply to be a manifest") from exc
    except ValidationError as exc:
        raise nested_validation_error(exc, "manifest", "invalid-manifest", ModelManifest) from exc
    if parsed.architecture is not None:
        known = parsed.architecture in BUILTIN_ARCHITECTURES or (
            parsed.architecture.startswith(TORCHVISION_PREFIX) and models.get(BUILTIN_SCOPE, parsed.architecture)
        )
        if not known:
            raise invalid(
                ["body", "manifest", "architecture"],
                f"unknown architecture {parsed.architecture!r}; allowed: {', '.join(BUILTIN_ARCHITECTURES)} "
                "or torchvision/<name> (GET /v1/models lists the torchvision ones)",
            )
    try:
        check_model_file(file.file, parsed.format)
    except UploadRejected as exc:
        raise rejected(exc) from exc
    model_id = parsed.name
    if models.get(tenant, model_id) is not None:
        raise ProblemError(409, "model-exists", f"A model {model_id!r} exists; delete it first or pick another name.")
    contract, warnings = input_contract(parsed, models)
    record = ModelInfo(
        id=model_id,
        name=parsed.name,
        kind=parsed.kind,
        source="upload",
        status="pending",
        description=parsed.description,
        input=contract,
        labels=parsed.labels,
        warnings=warnings,
    ).model_dump()
    settings = request.app.state.settings
    prefix = files.begin("models", tenant, model_id)
    try:
        stored_name = STORED_MODEL_NAMES[parsed.format]
        info = files.put_file(f"{prefix}/{stored_name}", file.file, settings.max_upload_bytes)
        record.update(
            format=parsed.format, architecture=parsed.architecture, bytes=info.size, sha256=info.sha256, prefix=prefix,
            file={"name": file.filename or stored_name, "key": info.key},
        )  # fmt: skip
        if not files.publish("models", tenant, model_id, record):
            raise ProblemError(409, "model-exists", f"A model {model_id!r} exists; delete it first or pick another name.")
    except BaseException:
        files.discard(prefix)
        raise
    try:
        outcome = store.create(
            tenant,
            kind=MODEL_INSPECTION,
            model=model_id,
            params={},
            metadata={"reason": "upload"},
            timeout_seconds=min(600, settings.job_timeout_seconds),
        )
    except BaseException:
        # Nothing half-registered stays behind (the files go at the next sweep).
        files.remove("models", tenant, model_id)
        raise
    record["inspection_job"] = outcome.job_id
    files.update("models", tenant, model_id, record, only_if_status="pending")
    response.headers["Location"] = f"/v1/models/{model_id}"
    return ModelInfo.model_validate(record)


def input_contract(manifest: ModelManifest, models: ModelCatalog) -> tuple[dict, list[str]]:
    """The manifest's input contract, with the normalization a torchvision architecture's
    weights were trained with where the manifest leaves it out, and warnings where the model
    would get unnormalized inputs (a silent mistake otherwise: wrong pictures, no error)."""
    contract = manifest.input.model_dump(exclude_none=True)
    warnings: list[str] = []
    image = contract.get("image")
    absent = [key for key in ("mean", "std") if image is not None and key not in image]
    if absent:
        architecture = manifest.architecture or ""
        known = models.get(BUILTIN_SCOPE, architecture) if architecture.startswith(TORCHVISION_PREFIX) else None
        weights = ((known or {}).get("input") or {}).get("image") or {}
        if all(len(weights.get(key) or []) == image["channels"] for key in absent):
            image.update({key: list(weights[key]) for key in absent})
            given = ", ".join(f"{key} {weights[key]}" for key in absent)
            warnings.append(
                f"input.image {' and '.join(absent)} not given: using those of {architecture}'s pretrained "
                f"weights' transforms ({given}). If your weights were trained with another normalization, "
                "upload again with `mean` and `std` in the manifest."
            )
        else:
            warnings.append(
                f"input.image has no {' and no '.join(absent)}: pictures reach the model as values in [0, 1] "
                "without that normalization. If the model was trained on normalized inputs (ImageNet models: "
                "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]), its results here will be wrong: "
                "upload again with `mean` and `std` in the manifest."
            )
    tabular = contract.get("tabular") or {}
    raw = [f["name"] for f in tabular.get("features", []) if f["type"] == "numeric" and ("mean" not in f or "std" not in f)]
    if raw:
        warnings.append(
            f"numeric features without mean/std reach the model unstandardized (mean 0, std 1 assumed): "
            f"{', '.join(raw[:20])}{' ...' if len(raw) > 20 else ''}. If the model was trained on standardized "
            "values, upload again with each feature's `mean` and `std`."
        )
    return contract, warnings


@router.delete(
    "/models/{model_id:path}",
    status_code=204,
    tags=["models"],
    summary="Remove an uploaded model",
    responses=problem_responses(401, 404, 409, 503),
)
def delete_model(model_id: str, tenant: Tenant, models: Models, files: Files, request: Request) -> Response:
    if models.get(tenant, model_id) is None:
        raise ProblemError(404, "model-not-found", f"No model {model_id!r}.")
    if files.remove("models", tenant, model_id) is None:
        raise ProblemError(409, "builtin-model", f"{model_id!r} is built in; only uploaded models can be removed.")
    request.app.state.indexes.delete_for(tenant, model=model_id)  # its activation indexes go with it
    request.app.state.atlases.delete_for(tenant, model=model_id)  # and its atlases' stored chunks
    return Response(status_code=204)


add_head_routes(router)
