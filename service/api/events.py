"""/v1/jobs/{id}/events: a job followed as Server-Sent Events until it ends."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.api.auth import Tenant
from service.api.deps import problem_responses
from service.api.jobs import JobId, job_not_found
from service.api.operation_ids import camel_case_operation_id
from service.jobspec import Job

router = APIRouter(prefix="/v1", tags=["jobs"], generate_unique_id_function=camel_case_operation_id)

SSE_KEEPALIVE_SECONDS = 15.0
SSE_RECHECK_SECONDS = 2.0


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
        record = await request.app.state.reader.tenant_record(tenant, job_id)
        if record is None:
            raise job_not_found(job_id)
    except BaseException:
        await pubsub.aclose()
        raise

    async def read_job() -> Job | None:
        latest = await request.app.state.reader.record(job_id)
        return latest.to_job() if latest else None

    async def stream():
        try:
            job = record.to_job()
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


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


