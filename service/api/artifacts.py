"""/v1/jobs/{id}/artifacts/{name}: a finished job's files, with strong ETags; HEAD too."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response

from service.api.auth import Tenant
from service.api.deps import problem_responses
from service.api.head import add_head_routes
from service.api.jobs import JobId, job_not_found
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.jobspec import JobStatus

router = APIRouter(prefix="/v1", tags=["jobs"], generate_unique_id_function=camel_case_operation_id)

ARTIFACT_CACHE_CONTROL = "private, max-age=31536000, immutable"
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


@router.get(
    "/jobs/{job_id}/artifacts/{name}",
    summary="Download one artifact",
    description="Artifacts never change: the strong `ETag` is the content's sha256, "
    "`If-None-Match` gives 304, and they may be cached for as long as the job lives. HEAD gives "
    "the same headers (Content-Length, ETag) without the body. A 404 is `job-not-found` when "
    "there is no such job, `artifact-not-found` when the job has no such artifact.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "Not modified (the ETag matches)"},
        **problem_responses(401, 404, 503),
    },
)
async def get_artifact(
    job_id: JobId,
    name: Annotated[str, Path(pattern=ARTIFACT_NAME_PATTERN)],
    tenant: Tenant,
    request: Request,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    found = await request.app.state.reader.artifact(tenant, job_id, name)
    if found is None:
        raise await _artifact_not_found(request, tenant, job_id, name)
    ref, data = found
    etag = f'"{ref.sha256}"'
    headers = {"ETag": etag, "Cache-Control": ARTIFACT_CACHE_CONTROL}
    if if_none_match and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{name}"'
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
