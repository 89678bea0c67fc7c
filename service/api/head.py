"""HEAD wherever GET is served (RFC 9110 9.3.2): the same status and headers, no body.

FastAPI routes answer only the methods they name, so `curl -I` on an artifact was a 405. Each
router calls `add_head_routes` after its GET routes: a HEAD twin of each runs the GET endpoint
(same headers, Content-Length and ETag included, by construction) and the server drops the body,
as uvicorn does for every HEAD answer. The twins stay out of the OpenAPI document: HEAD is
implied by GET there. Streaming endpoints (Server-Sent Events) get none: their "headers" would
mean opening a stream that never ends.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute


def add_head_routes(router: APIRouter) -> None:
    for route in list(router.routes):
        if not isinstance(route, APIRoute) or "GET" not in route.methods or "HEAD" in route.methods:
            continue
        response_class = getattr(route.response_class, "value", route.response_class)  # may be a placeholder
        if isinstance(response_class, type) and issubclass(response_class, StreamingResponse):
            continue
        router.routes.append(
            APIRoute(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                name=f"{route.name}_head",
                response_model=route.response_model,
                status_code=route.status_code,
                dependencies=route.dependencies,
                response_class=route.response_class,
                dependency_overrides_provider=route.dependency_overrides_provider,
                generate_unique_id_function=route.generate_unique_id_function,
                include_in_schema=False,
            )
        )
