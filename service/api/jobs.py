"""/v1/jobs: create (or estimate), read, list, cancel and delete jobs; /v1/kinds.

Following a job is in events.py, downloading its artifacts in artifacts.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import StringConstraints, TypeAdapter

from service.api.admission import admit
from service.api.auth import Tenant, current_tenant, get_settings
from service.api.deps import Catalog, Datasets, Kinds, Store, problem_responses
from service.api.head import add_head_routes
from service.api.json_body import (
    check_json_media_type,
    header_openapi,
    json_body_openapi,
    read_header,
    read_json_body,
    reads_json_body,
)
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import ProblemError
from service.jobspec import Job, JobCreate, JobPage, JobStatus, KindInfo
from service.jobstore import CancelOutcome, decode_page_token, request_fingerprint
from service.kinds.cost import JobEstimate
from service.settings import Settings
from service.validation import invalid
from service.webhooks import tenant_secret

router = APIRouter(prefix="/v1", tags=["jobs"], generate_unique_id_function=camel_case_operation_id)

POLL_AFTER_SECONDS = 1
# A create planned on catalog records that changed meanwhile is planned again (jobs.create_job).
CREATE_TRIES = 3

JobId = Annotated[str, Path(description="The job id.")]


def job_not_found(job_id: str) -> ProblemError:
    return ProblemError(404, "job-not-found", f"No job {job_id!r}.")


async def require_json_body(request: Request) -> None:
    # async: a sync dependency would cost the request a trip to a worker thread.
    check_json_media_type(request)


IDEMPOTENCY_KEY = "idempotency-key"
IDEMPOTENCY_KEY_TYPE = TypeAdapter(Annotated[str | None, StringConstraints(min_length=1, max_length=255)])
IDEMPOTENCY_KEY_DESCRIPTION = (
    "Retrying with the same key and body returns the same job (202, with `Idempotent-Replayed: true`); the same "
    "key with another body is a 422. Keys are kept for the result TTL."
)


@router.get("/kinds", response_model=list[KindInfo], summary="The job kinds this deployment runs")
def list_kinds(kinds: Kinds, _: Tenant) -> list[KindInfo]:
    return [
        KindInfo(name=k.name, description=k.description, params_schema=k.params_model.model_json_schema())
        for k in kinds.values()
        if not k.internal
    ]


@router.post(
    "/jobs",
    status_code=202,
    response_model=Job,
    summary="Create a job",
    responses=problem_responses(401, 413, 415, 422, 503),
    openapi_extra={
        "parameters": [header_openapi(IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_TYPE, IDEMPOTENCY_KEY_DESCRIPTION,
                                      "Idempotency-Key")],  # fmt: skip
        **json_body_openapi(JobCreate),
    },
)
@reads_json_body(JobCreate)
async def create_job(request: Request) -> Response:
    # The endpoint reads its body, key and tenant itself (json_body.py): FastAPI's machinery for
    # declared parameters was the largest part of a create's CPU. The checks and their errors
    # are the same, in the same order as estimate's: media type, API key, then header and body.
    check_json_media_type(request)
    tenant = await current_tenant(request)
    idempotency_key, key_errors = read_header(request, IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_TYPE)
    body = await read_json_body(request, JobCreate, key_errors)
    # Creates come in bursts from other services. On the event loop, in one Redis round trip
    # while the catalog records the job names do not change: planned against the API's copy of
    # them (admission.py), created and queued by one script that checks that copy is current
    # (service/jobstore/creates.py), answered from the record just written, serialized once.
    state = request.app.state
    fingerprint = request_fingerprint(body.model_dump(mode="json")) if idempotency_key else ""
    for attempt in range(CREATE_TRIES):
        admitted = await state.admission.admit(body, tenant, state, fresh=attempt > 0)
        outcome = await state.creates.create(
            tenant,
            kind=body.kind,
            model=body.model,
            params=admitted.plan.params.model_dump(mode="json"),
            metadata=body.metadata,
            timeout_seconds=admitted.timeout,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            webhook=body.webhook.model_dump() if body.webhook else None,
            # The last try is planned on records just read, as creates were before the checks.
            catalog_checks=admitted.checks if attempt < CREATE_TRIES - 1 else (),
        )
        if not outcome.stale:
            break
        state.admission.forget(tenant, admitted.checks)
    if not outcome.fingerprint_matches:
        raise invalid(
            ["header", "Idempotency-Key"],
            f"this key was used for another request (job {outcome.job_id}); use a new key",
            "idempotency-key-reused",
        )
    if outcome.record is not None:
        content, status = outcome.record.job_json(), outcome.record.status
    else:  # a replayed key: the job as it stands now
        found = await state.reader.get_json(tenant, outcome.job_id)
        if found is None:  # deleted between create and read
            raise job_not_found(outcome.job_id)
        content, status = found
    headers = {"Location": f"/v1/jobs/{outcome.job_id}"}
    if not status.is_terminal:  # a replayed key may name a finished job: nothing to wait for
        headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    if not outcome.created:
        headers["Idempotent-Replayed"] = "true"
    return Response(content, status_code=202, media_type="application/json", headers=headers)


@router.post(
    "/jobs/estimate",
    response_model=JobEstimate,
    summary="Estimate how long a job would take",
    description="Takes the body of `POST /v1/jobs` and checks it the same way (the same 422s), "
    "creating nothing: how many seconds the job would run on an idle CPU and GPU worker that has "
    "the model loaded, and what the estimate counts (`basis`). A rough figure (within a factor of "
    "about 3): enough to tell a second from a minute before submitting.",
    dependencies=[Depends(require_json_body)],
    responses=problem_responses(401, 404, 413, 415, 422, 503),
)
def estimate_job(
    body: JobCreate,
    tenant: Tenant,
    catalog: Catalog,
    datasets: Datasets,
    kinds: Kinds,
    settings: Annotated[Settings, Depends(get_settings)],
) -> JobEstimate:
    plan, _ = admit(body, tenant, catalog, datasets, kinds, settings)
    cost = plan.cost()
    if cost is None:
        raise ProblemError(404, "no-estimate", f"Job kind {body.kind!r} has no cost model: it runs, but cannot be estimated.")
    return JobEstimate(kind=body.kind, seconds=cost.seconds, basis=cost.basis)


@router.get(
    "/webhook-secret",
    summary="Your webhook signing secret",
    description="Verify a delivery: base64 HMAC-SHA256, keyed with the base64-decoded part after "
    "`whsec_`, of `{webhook-id}.{webhook-timestamp}.{body}`, compared with the `v1,` signature.",
    responses=problem_responses(401, 404),
)
async def get_webhook_secret(tenant: Tenant, settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, str]:
    if not settings.webhook_secret:
        raise ProblemError(404, "webhooks-off", "Webhooks are not configured on this service.")
    return {"secret": tenant_secret(settings, tenant)}


@router.get(
    "/jobs",
    response_model=JobPage,
    summary="List the tenant's jobs, newest first",
    responses=problem_responses(401, 422, 503),
)
def list_jobs(
    tenant: Tenant,
    store: Store,
    status: JobStatus | None = None,
    kind: str | None = Query(default=None, max_length=100),
    page_size: int = Query(default=20, ge=1, le=200),
    page_token: str | None = Query(default=None, max_length=200, description="From `next_page_token`."),
) -> JobPage:
    after = None
    if page_token is not None:
        try:
            after = decode_page_token(page_token)
        except ValueError as exc:
            raise invalid(["query", "page_token"], str(exc)) from exc
    items, token = store.list(tenant, page_size=page_size, after=after, status=status, kind=kind)
    return JobPage(items=items, next_page_token=token)


@router.get("/jobs/{job_id}", response_model=Job, summary="Get a job", responses=problem_responses(401, 404, 503))
async def get_job(job_id: JobId, tenant: Tenant, request: Request) -> Response:
    # The hottest endpoint (clients poll it): async Redis, and the model serialized once,
    # straight to JSON, instead of validated again as a response_model.
    found = await request.app.state.reader.get_json(tenant, job_id)
    if found is None:
        raise job_not_found(job_id)
    body, status = found
    headers = {} if status.is_terminal else {"Retry-After": str(POLL_AFTER_SECONDS)}
    return Response(body, media_type="application/json", headers=headers)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    status_code=202,
    summary="Cancel a queued or running job",
    description="A queued job is canceled at once. A running job is asked to stop and ends "
    "`canceled` at its next step (`cancel_requested` is true meanwhile). Canceling a canceled "
    "job is a no-op; canceling a succeeded or failed one is a 409.",
    responses=problem_responses(401, 404, 409, 503),
)
def cancel_job(job_id: JobId, tenant: Tenant, store: Store, request: Request) -> Job:
    outcome, job = store.cancel(tenant, job_id)
    request.app.state.reader.forget(job_id)  # read-your-writes in this process, before the event
    if job is None or outcome == CancelOutcome.MISSING:
        raise job_not_found(job_id)
    if outcome in (JobStatus.succeeded, JobStatus.failed):
        raise ProblemError(409, "job-finished", f"Job {job_id} already {outcome}; nothing to cancel.")
    return job


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    summary="Forget a finished job and its artifacts",
    responses=problem_responses(401, 404, 409, 503),
)
def delete_job(job_id: JobId, tenant: Tenant, store: Store, request: Request) -> Response:
    outcome = store.delete(tenant, job_id)
    request.app.state.reader.forget(job_id)
    if outcome == "missing":
        raise job_not_found(job_id)
    if outcome != "deleted":
        raise ProblemError(409, "job-not-finished", f"Job {job_id} is {outcome}; cancel it first.")
    return Response(status_code=204)



add_head_routes(router)
