"""Liveness, readiness and Prometheus metrics (outside /v1)."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import problem_responses
from service.api.operation_ids import camel_case_operation_id
from service.api.problems import problem_response
from service.readiness import check_readiness, redis_unavailable

router = APIRouter(tags=["health"], generate_unique_id_function=camel_case_operation_id)


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to take jobs: Redis answers, a worker is alive, the built-in catalog is registered",
    description="While not ready: 503 with `Retry-After`, its `detail` saying what the service waits for "
    "(Redis, a live worker, or the built-in models and datasets a worker registers when it starts).",
    responses=problem_responses(503),
)
def readyz(request: Request) -> Response:
    state = request.app.state
    # `glassbox up` runs the API with --supervised: then the worker is the supervisor's to start.
    supervised = getattr(state, "supervised", False)
    try:
        store = state.store
        store.redis.ping()
        readiness = check_readiness(
            store.redis, store.live_workers(), state.catalog, state.datasets, state.settings, supervised=supervised
        )
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        readiness = redis_unavailable(supervised=supervised)
    if not readiness.ready:
        return problem_response(
            503,
            "not-ready",
            "Not ready",
            readiness.waiting_for,
            headers={"Retry-After": str(readiness.retry_after_seconds)},
        )
    return JSONResponse({"status": "ready", "redis": "ok", "workers": readiness.workers, "builtins": "registered"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
