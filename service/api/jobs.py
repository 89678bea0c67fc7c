"""/v1/jobs: create, read, list, cancel, delete, follow and download jobs."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from service.api.deps import Catalog, Datasets, Kinds, Store, problem_responses
from service.api.head import add_head_routes
from service.api.operation_ids import camel_case_operation_id
from service.auth import Tenant, get_settings
from service.jobs import CancelOutcome, decode_page_token, record_to_job, request_fingerprint
from service.jobspec import DatasetUse, Job, JobCreate, JobKind, JobPage, JobStatus, KindInfo
from service.kinds.cost import JobEstimate
from service.model_catalog import ModelCatalog
from service.model_refs import ModelRefError, parse_model_ref
from service.problems import ProblemError, invalid, nested_validation_problem
from service.settings import Settings
from service.webhooks import WebhookRefused, check_url, tenant_secret

router = APIRouter(prefix="/v1", tags=["jobs"], generate_unique_id_function=camel_case_operation_id)

POLL_AFTER_SECONDS = 1
SSE_KEEPALIVE_SECONDS = 15.0
SSE_RECHECK_SECONDS = 2.0
ARTIFACT_CACHE_CONTROL = "private, max-age=31536000, immutable"
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

JobId = Annotated[str, Path(description="The job id.")]


def _not_found(job_id: str) -> ProblemError:
    return ProblemError(404, "job-not-found", f"No job {job_id!r}.")


def require_json_body(content_type: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ProblemError(
            415, "unsupported-media-type", f"Send the job as `application/json` (got {media_type or 'nothing'!r})."
        )


@router.get("/kinds", response_model=list[KindInfo], summary="The job kinds this deployment runs")
def list_kinds(kinds: Kinds, _: Tenant) -> list[KindInfo]:
    return [
        KindInfo(name=k.name, description=k.description, params_schema=k.params_model.model_json_schema())
        for k in kinds.values()
    ]


@router.post(
    "/jobs",
    status_code=202,
    response_model=Job,
    summary="Create a job",
    dependencies=[Depends(require_json_body)],
    responses=problem_responses(401, 413, 415, 422, 503),
)
def create_job(
    body: JobCreate,
    response: Response,
    tenant: Tenant,
    store: Store,
    catalog: Catalog,
    datasets: Datasets,
    kinds: Kinds,
    settings: Annotated[Settings, Depends(get_settings)],
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Retrying with the same key and body returns the same job (202, with "
            "`Idempotent-Replayed: true`); the same key with another body is a 422. Keys are "
            "kept for the result TTL.",
        ),
    ] = None,
) -> Job:
    admitted = admit(body, tenant, catalog, datasets, kinds, settings)
    outcome = store.create(
        tenant,
        kind=body.kind,
        model=body.model,
        params=admitted.params.model_dump(mode="json"),
        metadata=body.metadata,
        timeout_seconds=admitted.timeout_seconds,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(body.model_dump(mode="json")),
        webhook=body.webhook.model_dump() if body.webhook else None,
    )
    if not outcome.fingerprint_matches:
        raise invalid(
            ["header", "Idempotency-Key"],
            f"this key was used for another request (job {outcome.job_id}); use a new key",
            "idempotency-key-reused",
        )
    job = store.get(tenant, outcome.job_id)
    if job is None:  # deleted between create and read: only possible for a replayed key
        raise _not_found(outcome.job_id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not job.status.is_terminal:  # a replayed key may name a finished job: nothing to wait for
        response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    if not outcome.created:
        response.headers["Idempotent-Replayed"] = "true"
    return job


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
    admitted = admit(body, tenant, catalog, datasets, kinds, settings)
    if admitted.kind.cost is None:
        raise ProblemError(404, "no-estimate", f"Job kind {body.kind!r} has no cost model: it runs, but cannot be estimated.")
    cost = admitted.kind.cost(admitted.params, admitted.model_record, admitted.dataset_records)
    return JobEstimate(kind=body.kind, seconds=cost.seconds, basis=cost.basis)


class Admission(NamedTuple):
    """A job request that passed every submit-time check, with what the checks looked up."""

    kind: JobKind
    params: BaseModel
    model_record: dict[str, Any]
    dataset_records: dict[str, dict[str, Any]]
    timeout_seconds: int


def admit(
    body: JobCreate,
    tenant: str,
    catalog: ModelCatalog,
    datasets: ModelCatalog,
    kinds: dict[str, JobKind],
    settings: Settings,
) -> Admission:
    """Every check a job request gets before it is queued (a 422 naming the field): creating a
    job and estimating one run the same checks, so an estimate is refused exactly when a create is."""
    kind = kinds.get(body.kind)
    if kind is None:
        allowed = ", ".join(sorted(kinds)) or "none (no job kinds are installed)"
        raise invalid(["body", "kind"], f"unknown job kind {body.kind!r}; allowed: {allowed}", "unknown-kind")
    try:
        params = kind.params_model.model_validate(body.params)
    except ValidationError as exc:
        raise nested_validation_problem(exc, "params", "invalid-params", kind.params_model) from exc
    try:
        model_ref = parse_model_ref(body.model)
    except ModelRefError as exc:
        raise invalid(["body", "model"], str(exc), "invalid-model") from exc
    model_record = catalog.get(tenant, model_ref.id)
    if model_record is None:
        allowed = ", ".join(catalog.ids(tenant)) or "none"
        raise invalid(["body", "model"], f"unknown model {body.model!r}; allowed: {allowed}", "unknown-model")
    if kind.check is not None:
        kind.check(params, model_record)
    dataset_records: dict[str, dict[str, Any]] = {}
    for use in kind.datasets(params) if kind.datasets is not None else []:
        dataset_records[use.dataset_id] = _check_dataset(use, tenant, datasets, model_record)
    timeout = body.timeout_seconds or settings.job_timeout_seconds
    if timeout > settings.job_timeout_seconds:
        raise invalid(
            ["body", "timeout_seconds"],
            f"at most {settings.job_timeout_seconds} (GLASSBOX_JOB_TIMEOUT_SECONDS)",
            "limit-exceeded",
        )
    if body.webhook is not None:
        if not settings.webhook_secret:
            raise invalid(["body", "webhook"], "webhooks are not configured on this service (GLASSBOX_WEBHOOK_SECRET)")
        try:
            check_url(body.webhook.url, settings)
        except WebhookRefused as exc:
            raise invalid(["body", "webhook", "url"], str(exc), "webhook-refused") from exc
    return Admission(kind, params, model_record, dataset_records, timeout)


def _check_dataset(use: DatasetUse, tenant: str, datasets: ModelCatalog, model_record: dict) -> dict[str, Any]:
    loc = ["body", "params", *use.loc]
    record = datasets.get(tenant, use.dataset_id)
    if record is None:
        allowed = ", ".join(r["id"] for r in datasets.records(tenant) if r.get("kind") == use.kind) or "none"
        raise invalid(loc, f"unknown dataset {use.dataset_id!r}; allowed ({use.kind}): {allowed}", "unknown-dataset")
    if record.get("kind") != use.kind:
        raise invalid(
            loc, f"dataset {use.dataset_id!r} holds {record.get('kind')}; this needs {use.kind}", "wrong-dataset-kind"
        )
    if use.check is not None:
        use.check(record, model_record)
    return record


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
        raise _not_found(job_id)
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
        raise _not_found(job_id)
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
        raise _not_found(job_id)
    if outcome != "deleted":
        raise ProblemError(409, "job-not-finished", f"Job {job_id} is {outcome}; cancel it first.")
    return Response(status_code=204)


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


@router.get(
    "/jobs/{job_id}/events",
    summary="Follow a job as Server-Sent Events",
    description="Events: `status` (data: the whole job) first and on every status change, "
    "`progress` (data: `{fraction, message}`) as the job advances. The stream ends after the "
    "`status` event of a finished job. Comment lines keep idle connections open.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problem_responses(401, 404, 503)},
)
async def get_job_events(job_id: JobId, tenant: Tenant, request: Request) -> StreamingResponse:
    store = request.app.state.store
    async_redis = request.app.state.async_redis
    channel = store.keys.events(job_id)
    pubsub = async_redis.pubsub()
    # Subscribe before the first read, so that no change between the two is missed.
    await pubsub.subscribe(channel)
    try:
        record = await request.app.state.reader.record(job_id)
        if not record or record.get("tenant") != tenant:
            raise _not_found(job_id)
    except BaseException:
        await pubsub.aclose()
        raise

    async def read_job() -> Job | None:
        latest = await request.app.state.reader.record(job_id)
        return record_to_job(job_id, latest) if latest else None

    async def stream():
        try:
            job = record_to_job(job_id, record)
            yield _sse("status", job.model_dump_json())
            last_status = job.status
            last_event = time.monotonic()
            last_check = time.monotonic()
            while not last_status.is_terminal:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    event = json.loads(message["data"])
                    if event.get("type") == "progress":
                        yield _sse("progress", json.dumps({"fraction": event["fraction"], "message": event["message"]}))
                        last_event = now
                        continue
                if message is not None or now - last_check > SSE_RECHECK_SECONDS:
                    # A status event, or a periodic look in case a message was missed.
                    last_check = now
                    job = await read_job()
                    if job is None:
                        break
                    if job.status != last_status:
                        last_status = job.status
                        yield _sse("status", job.model_dump_json())
                        last_event = now
                if now - last_event > SSE_KEEPALIVE_SECONDS:
                    last_event = now
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    break
        finally:
            await pubsub.aclose()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _artifact_not_found(request: Request, tenant: str, job_id: str, name: str) -> ProblemError:
    """No such job (or another tenant's: the same answer), or a job without that artifact."""
    record = await request.app.state.reader.record(job_id)
    if not record or record.get("tenant") != tenant:
        return _not_found(job_id)
    status = record.get("status")
    if status != JobStatus.succeeded:
        return ProblemError(
            404, "artifact-not-found", f"Job {job_id!r} is {status}: only a succeeded job has artifacts."
        )
    return ProblemError(
        404, "artifact-not-found", f"Job {job_id!r} has no artifact {name!r}; its `result.artifacts` lists them."
    )


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


add_head_routes(router)
