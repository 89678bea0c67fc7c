"""Bearer API keys mapped to tenants (dependency `current_tenant`)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from service.api.problems import ProblemError
from service.settings import OPEN_MODE_TENANT, Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# One async dependency that reads the header itself: it runs on every request, and each extra
# dependency level (such as fastapi.security.HTTPBearer) costs measurable time per poll. The
# bearer scheme is declared in the OpenAPI document by `add_bearer_security`.
async def current_tenant(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return OPEN_MODE_TENANT
    unauthorized = {"WWW-Authenticate": "Bearer"}
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthorized", "Send `Authorization: Bearer <api key>`.", headers=unauthorized)
    presented = token.strip().encode()
    tenant = None
    # Compare with every key in constant time so that timing says nothing about which is close.
    for key, owner in settings.api_keys.items():
        if hmac.compare_digest(presented, key.encode()):
            tenant = owner
    if tenant is None:
        raise ProblemError(401, "unauthorized", "The API key is not valid.", headers=unauthorized)
    return tenant


Tenant = Annotated[str, Depends(current_tenant)]


def declare_bearer_security(document: dict[str, Any]) -> None:
    """Declare the bearer scheme on every /v1 operation of an OpenAPI document."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <api key>` (unless the service runs in open mode)",
    }
    for path, operations in document.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
