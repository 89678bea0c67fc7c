"""Bearer API keys mapped to tenants (dependency `current_tenant`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.problems import ProblemError
from service.settings import OPEN_MODE_TENANT, Settings

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# async: no I/O here, and an async dependency costs no thread-pool hop.
async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return OPEN_MODE_TENANT
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ProblemError(401, "unauthorized", "Send `Authorization: Bearer <api key>`.", headers=unauthorized)
    presented = credentials.credentials.encode()
    tenant = None
    # Compare with every key in constant time so that timing says nothing about which is close.
    for key, owner in settings.api_keys.items():
        if hmac.compare_digest(presented, key.encode()):
            tenant = owner
    if tenant is None:
        raise ProblemError(401, "unauthorized", "The API key is not valid.", headers=unauthorized)
    return tenant


Tenant = Annotated[str, Depends(current_tenant)]
