"""/v1/datasets: upload files (multipart) or register data where it is (JSON `source`).

An upload is parsed by Starlette's multipart parser into temporary files (spooled to disk past
64 KiB each, so memory does not grow with the upload), checked and indexed there (a zip's
central directory is at its end: the checks need a seekable file, which a request stream is
not), then streamed into the blob store with the size limit enforced and the sha256 computed
as it goes (service/datasets/uploads.py). The spools are deleted when the request ends.
A registration is checked here (form, allowed roots or the tenant's store prefix, something
there) and indexed by a `dataset_indexing` job on a worker.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from service.api.auth import Tenant
from service.api.catalog import Files, rejected
from service.api.deps import Datasets, Store, problem_responses
from service.api.head import add_head_routes
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.catalogspec import DatasetInfo, DatasetRegistration
from service.datasets import sources, uploads
from service.kinds.dataset_indexing import DATASET_INDEXING
from service.settings import Settings
from service.uploaded_files import WRITE_GRACE_SECONDS
from service.uploads import UploadRejected
from service.validation import InvalidRequest, invalid, with_allowed_names

router = APIRouter(prefix="/v1", generate_unique_id_function=camel_case_operation_id)

DATASET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MAX_DESCRIPTION = 2000
_NAME_HELP = "letters, digits, `.`, `_`, `-`; at most 100, starting with a letter or digit"

REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "description": "A .zip or .tar of PNG/JPEG images, several .tar shards (WebDataset: "
                        f"repeat the part, at most {uploads.MAX_SHARDS}), or a .csv with a header.",
                        "anyOf": [
                            {"type": "string", "contentMediaType": "application/octet-stream"},
                            {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}},
                        ],
                    },
                    "name": {"type": "string", "pattern": DATASET_ID_PATTERN,
                             "description": "The dataset id (default: the file name)."},
                    "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
                },
            }
        },
        "application/json": {"schema": DatasetRegistration.model_json_schema()},
    },
}


class _UploadParser(MultiPartParser):
    # Parts past this size go to disk: a request with the most shards holds 4 MiB in memory.
    spool_max_size = 64 * 1024


@router.get("/datasets", response_model=list[DatasetInfo], tags=["datasets"], responses=problem_responses(401, 503))
def list_datasets(tenant: Tenant, datasets: Datasets) -> list[DatasetInfo]:
    return [DatasetInfo.model_validate(r) for r in datasets.records(tenant)]


@router.get(
    "/datasets/{dataset_id}", response_model=DatasetInfo, tags=["datasets"], responses=problem_responses(401, 404, 503)
)
def get_dataset(dataset_id: str, tenant: Tenant, datasets: Datasets) -> DatasetInfo:
    record = datasets.get(tenant, dataset_id)
    if record is None:
        raise ProblemError(404, "dataset-not-found", f"No dataset {dataset_id!r}; GET /v1/datasets lists them.")
    return DatasetInfo.model_validate(record)


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetInfo,
    tags=["datasets"],
    summary="Upload a dataset (multipart `file`), or register one where it is (JSON `source`)",
    description="Multipart: a .zip or .tar of PNG/JPEG images, several .tar shards (the WebDataset "
    "layout: several `file` parts), or a .csv with a header; checked and indexed before the answer "
    "(201, `ready`). Images are indexed in file-name order (shard by shard); entries that are not "
    "images (README.txt, .DS_Store, __MACOSX/...) are skipped and listed in `skipped`; class labels "
    "come from the ImageFolder layout or WebDataset `.cls` files. A CSV's column types are inferred "
    "(numeric or categorical) and reported. JSON (`DatasetRegistration`): data already in the blob "
    "store (`store:sources/<tenant>/...`) or under an allowed root (`file:///...`), indexed where it is "
    "by a `dataset_indexing` job (202, `pending` until the job has checked every image).",
    responses={
        202: {"model": DatasetInfo, "description": "Registered; being indexed (`indexing_job`)."},
        **problem_responses(400, 401, 409, 413, 415, 422, 503),
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def upload_dataset(
    request: Request, response: Response, tenant: Tenant, datasets: Datasets, files: Files, store: Store
) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return await _register(request, response, tenant, datasets, files, store)
    if media != "multipart/form-data":
        raise ProblemError(
            415, "unsupported-media-type",
            "Send multipart/form-data (`file` parts: a .zip, a .tar, tar shards or a .csv) or application/json "
            "(a `source` to register).",
        )  # fmt: skip
    try:
        form = await _UploadParser(request.headers, request.stream(), max_files=uploads.MAX_SHARDS, max_fields=16).parse()
    except MultiPartException as exc:
        raise HTTPException(400, exc.message) from exc
    try:
        return await _upload(form, request, response, tenant, datasets, files)
    finally:
        await form.close()


async def _upload(
    form: FormData, request: Request, response: Response, tenant: str, datasets: Datasets, files: Files
) -> DatasetInfo:
    parts = form.getlist("file")
    if not parts:
        raise _field_error("file", "Field required: one or more `file` parts")
    if not all(isinstance(p, UploadFile) for p in parts):
        raise _field_error("file", "a file part (with a filename) is expected")
    name, description = _text_field(form, "name"), _text_field(form, "description") or ""
    if len(description) > MAX_DESCRIPTION:
        raise _field_error("description", f"String should have at most {MAX_DESCRIPTION} characters")
    if name is not None and not re.fullmatch(DATASET_ID_PATTERN, name):
        raise _field_error("name", f"the dataset id uses {_NAME_HELP}")
    dataset_id = name or _id_from(parts[0].filename or "dataset")
    if not re.fullmatch(DATASET_ID_PATTERN, dataset_id or ""):
        raise invalid(["body", "name"], f"give the dataset a `name` ({_NAME_HELP})")
    spooled = [uploads.UploadedPart(p.filename or "", p.file) for p in parts]
    try:
        prepared = await run_in_threadpool(uploads.prepare, spooled)
    except UploadRejected as exc:
        raise rejected(exc) from exc
    limit = request.app.state.settings.max_upload_bytes
    record = await run_in_threadpool(_store_upload, datasets, files, prepared, tenant, dataset_id, description, limit)
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return DatasetInfo.model_validate(record)


def _store_upload(
    datasets: Datasets, files: Files, prepared: uploads.PreparedDataset, tenant: str, dataset_id: str,
    description: str, limit: int,
) -> dict[str, Any]:  # fmt: skip
    _refuse_taken(datasets, tenant, dataset_id)
    try:
        return uploads.store(files, prepared, tenant, dataset_id, description=description, max_bytes=limit)
    except uploads.NameTaken:
        _refuse_taken(datasets, tenant, dataset_id, taken=True)
        raise


def _field_error(field: str, message: str) -> InvalidRequest:
    return invalid(["body", field], f"body.{field}: {message}", "validation-error")


def _text_field(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is not None and not isinstance(value, str):
        raise _field_error(field, "text is expected, not a file")
    return value


def _id_from(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", PurePosixPath(text.rstrip("/")).stem)[:100].strip("-.")


def _refuse_taken(datasets: Datasets, tenant: str, dataset_id: str, *, taken: bool = False) -> None:
    if taken or datasets.get(tenant, dataset_id) is not None:
        raise ProblemError(409, "dataset-exists", f"A dataset {dataset_id!r} exists; delete it first or pick another name.")


async def _register(
    request: Request, response: Response, tenant: str, datasets: Datasets, files: Files, store: Store
) -> DatasetInfo:
    try:
        body = DatasetRegistration.model_validate(json.loads(await request.body()))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid(["body"], f"not a JSON object: {exc}", "validation-error") from exc
    except ValidationError as exc:
        errors = [
            {"loc": ["body", *e["loc"]], "msg": with_allowed_names(e, DatasetRegistration), "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        raise InvalidRequest("validation-error", detail, errors) from exc
    record = await run_in_threadpool(_register_source, body, tenant, request.app.state.settings, datasets, files, store)
    response.status_code = 202
    response.headers["Location"] = f"/v1/datasets/{record['id']}"
    return DatasetInfo.model_validate(record)


def _register_source(
    body: DatasetRegistration, tenant: str, settings: Settings, datasets: Datasets, files: Files, store: Store
) -> dict[str, Any]:
    try:
        source = sources.parse_source(body.source, tenant, settings.dataset_roots)
        if source.scheme == "store":
            sources.check_store_source(files.store, source)
    except sources.SourceRefused as exc:
        raise invalid(["body", "source"], str(exc), "invalid-source") from exc
    dataset_id = body.name or _id_from(source.location)
    if not re.fullmatch(DATASET_ID_PATTERN, dataset_id or ""):
        raise invalid(["body", "name"], f"give the dataset a `name` ({_NAME_HELP})")
    _refuse_taken(datasets, tenant, dataset_id)
    prefix = files.begin("datasets", tenant, dataset_id, settings.job_timeout_seconds + WRITE_GRACE_SECONDS)
    record = DatasetInfo(
        id=dataset_id, kind="images", source="registered", status="pending", description=body.description,
        count=0, uri=body.source,
    ).model_dump(exclude_none=True)  # fmt: skip
    record.update(prefix=prefix, location={"scheme": source.scheme, "location": source.location})
    if not files.publish("datasets", tenant, dataset_id, record):
        files.discard(prefix)
        _refuse_taken(datasets, tenant, dataset_id, taken=True)
    try:
        outcome = store.create(
            tenant, kind=DATASET_INDEXING, model="", params={"dataset": dataset_id},
            metadata={"reason": "registration"}, timeout_seconds=settings.job_timeout_seconds,
        )  # fmt: skip
    except BaseException:
        files.remove("datasets", tenant, dataset_id)
        raise
    record["indexing_job"] = outcome.job_id
    files.update("datasets", tenant, dataset_id, record, only_if_status="pending")
    return record


@router.delete(
    "/datasets/{dataset_id}", status_code=204, tags=["datasets"], responses=problem_responses(401, 404, 409, 503)
)
def delete_dataset(dataset_id: str, tenant: Tenant, datasets: Datasets, files: Files, request: Request) -> Response:
    """Remove an upload (its files are deleted) or a registration (its index is; the source
    data is never touched)."""
    if datasets.get(tenant, dataset_id) is None:
        raise ProblemError(404, "dataset-not-found", f"No dataset {dataset_id!r}.")
    if files.remove("datasets", tenant, dataset_id) is None:
        raise ProblemError(409, "builtin-dataset", f"{dataset_id!r} is built in; only uploads can be removed.")
    request.app.state.indexes.delete_for(tenant, dataset=dataset_id)  # its activation indexes go with it
    request.app.state.atlases.delete_for(tenant, dataset=dataset_id)  # and its atlases' stored chunks
    request.app.state.spectra.delete_for(tenant, dataset=dataset_id)  # and its MACO spectra
    return Response(status_code=204)


add_head_routes(router)
