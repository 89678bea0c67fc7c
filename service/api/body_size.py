"""Request body size limits, enforced before a body is parsed (413 problem+json).

Multipart bodies to the upload paths get `GLASSBOX_MAX_UPLOAD_BYTES` (they are spooled to disk,
then streamed to the blob store); every other body, JSON to those paths included (a dataset
registration), gets `GLASSBOX_MAX_REQUEST_BYTES`, since JSON is parsed in memory."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response

UPLOAD_PATHS = ("/v1/models", "/v1/datasets")


class BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing passes it through (it turns any other
    error while reading the body into a 400)."""

    def __init__(self, limit: int):
        super().__init__(413, f"The limit for this endpoint is {limit} bytes.")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_request_bytes: int, max_upload_bytes: int):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, path: str, content_type: bytes) -> int:
        multipart = content_type.split(b";", 1)[0].strip().lower() == b"multipart/form-data"
        if multipart and any(path == p or path.startswith(p + "/") for p in UPLOAD_PATHS):
            return self.max_upload_bytes
        return self.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = self.limit_for(scope["path"], headers.get(b"content-type", b""))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(limit)(scope, receive, send)

    @staticmethod
    def _too_large(limit: int):
        return problem_response(
            413, "payload-too-large", "Request body too large", f"The limit for this endpoint is {limit} bytes."
        )
