"""/v1/jobs/{id}/artifacts/{name}: a finished job's files, with strong ETags; HEAD too."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from service.api.auth import Tenant
from service.api.deps import problem_responses
from service.api.downloads import IMMUTABLE, blob_response, etag_matches
from service.api.head import add_head_routes
from service.api.jobs import JobId, job_not_found
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.jobspec import ArtifactRef, JobStatus

router = APIRouter(prefix="/v1", tags=["jobs"], generate_unique_id_function=camel_case_operation_id)

ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}$"


@router.get(
    "/jobs/{job_id}/artifacts/{name:path}",
    summary="Download one artifact",
    description="Artifacts never change: the strong `ETag` is the content's sha256, "
    "`If-None-Match` gives 304, and they may be cached for as long as the job lives. A single "
    "`Range` gives 206 (416 past the end); HEAD gives the headers (Content-Length, ETag) without "
    "the body. With an S3 store and GLASSBOX_PRESIGN_DOWNLOADS, a 307 to a short-lived URL. A 404 "
    "is `job-not-found` when there is no such job, `artifact-not-found` when the job has no such "
    "artifact. Names may contain `/` (`units/3/fv.png`).",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range"},
        304: {"description": "Not modified (the ETag matches)"},
        307: {"description": "Download it from the presigned URL in `Location`"},
        **problem_responses(401, 404, 416, 503),
    },
)
async def get_artifact(
    job_id: JobId,
    name: Annotated[str, Path(pattern=ARTIFACT_NAME_PATTERN, max_length=512)],
    tenant: Tenant,
    request: Request,
) -> Response:
    found = await request.app.state.reader.artifact(tenant, job_id, name)
    if found is None:
        raise await _artifact_not_found(request, tenant, job_id, name)
    ref, key = found
    if key is not None:
        return await blob_response(
            request, request.app.state.blobs, request.app.state.settings, key,
            size=ref.bytes, sha256=ref.sha256, media_type=ref.content_type, filename=name,
        )  # fmt: skip
    return await _legacy_artifact(request, job_id, ref)


async def _legacy_artifact(request: Request, job_id: str, ref: ArtifactRef) -> Response:
    """An artifact of a job finished before the upgrade to the blob store: still in Redis."""
    data = await request.app.state.reader.legacy_artifact(job_id, ref.name)
    if data is None:
        raise ProblemError(404, "file-gone", "The file is no longer stored (it expired or was deleted).")
    etag = f'"{ref.sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag_matches(etag, request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type=ref.content_type, headers=headers)


async def _artifact_not_found(request: Request, tenant: str, job_id: str, name: str) -> ProblemError:
    """No such job (or another tenant's: the same answer), or a job without that artifact."""
    record = await request.app.state.reader.tenant_record(tenant, job_id)
    if record is None:
        return job_not_found(job_id)
    status = record.status
    if status != JobStatus.succeeded:
        return ProblemError(
            404, "artifact-not-found", f"Job {job_id!r} is {status}: only a succeeded job has artifacts."
        )
    return ProblemError(
        404, "artifact-not-found", f"Job {job_id!r} has no artifact {name!r}; its `result.artifacts` lists them."
    )



add_head_routes(router)
