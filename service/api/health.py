"""Liveness, readiness and Prometheus metrics (outside /v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import problem_responses
from service.api.operation_ids import camel_case_operation_id
from service.problems import REDIS_RETRY_AFTER_SECONDS, problem_response

router = APIRouter(tags=["health"], generate_unique_id_function=camel_case_operation_id)


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to take jobs: Redis answers and at least one worker is alive",
    responses=problem_responses(503),
)
def readyz(request: Request) -> Response:
    store = request.app.state.store
    store.redis.ping()
    workers = store.live_workers()
    if not workers:
        return problem_response(
            503,
            "no-workers",
            "No worker is alive",
            "Jobs would wait in the queue: start `glassbox worker`.",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
        )
    return JSONResponse({"status": "ready", "redis": "ok", "workers": len(workers)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
