"""Serving the API with uvicorn, stopping promptly.

uvicorn stops by waiting for the requests in flight; a job's event stream is one until its job
ends, so a stop would wait for jobs (or, with a graceful-shutdown timeout, cancel the streams
and log their tracebacks as errors). Instead, once uvicorn is asked to exit, every request still
reading its client is told that the client left: an event stream then ends at its next look
(within a second), cleanly, and its client reconnects to whatever serves next.
"""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Longer than an event stream takes to notice the stop; only a request stuck elsewhere waits this long.
GRACEFUL_SHUTDOWN_SECONDS = 3


class EndRequestsOnStop:
    """ASGI middleware: after `stop()`, `receive` answers `http.disconnect`."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def receive_until_stop() -> Message:
            # No await before this check: Starlette's is_disconnected() calls receive in an
            # already-cancelled scope and must get the answer without suspending. (A receive
            # already waiting when the stop comes keeps waiting: only uploads do that, and
            # uvicorn's graceful-shutdown timeout bounds them.)
            if self.stopping.is_set():
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(scope, receive_until_stop, send)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, middleware: EndRequestsOnStop):
        super().__init__(config)
        self.middleware = middleware

    def handle_exit(self, sig, frame) -> None:
        self.middleware.stop()
        super().handle_exit(sig, frame)


def serve(app: ASGIApp, *, host: str, port: int, log_level: str, access_log: bool) -> None:
    middleware = EndRequestsOnStop(app)
    config = uvicorn.Config(
        middleware,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    _Server(config, middleware).run()
