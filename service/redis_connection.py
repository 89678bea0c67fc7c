"""How every process connects to Redis: fail fast while it is down, reconnect by itself after."""

from __future__ import annotations

from typing import Any

# A client gets a 503 at once while Redis is down, and the connection comes back by itself.
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
# No Redis URL is configured in `glassbox openapi` and in import-only checks.
UNCONFIGURED_REDIS_URL = "redis://127.0.0.1:1/0"


def redis_options() -> dict[str, Any]:
    return {
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
    }
