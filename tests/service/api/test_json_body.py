"""The create endpoint reads its own body and Idempotency-Key (service/api/json_body.py); FastAPI
reading them as declared parameters is the reference. Both endpoints sit in one small app with
the service's problem handlers and body size limit, and every bad request gets the same answer
from both: status, problem type, detail and errors."""

from __future__ import annotations

import json
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, Request

from service.api.body_size import BodySizeLimitMiddleware
from service.api.jobs import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_TYPE, require_json_body
from service.api.json_body import check_json_media_type, read_header, read_json_body, reads_json_body
from service.api.problems import install_problem_handlers
from service.jobspec import JobCreate

pytestmark = pytest.mark.anyio
LIMIT = 4096


def both_ways() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/declared", dependencies=[Depends(require_json_body)])
    async def declared(
        body: JobCreate, idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None
    ):
        return {"body": body.model_dump(mode="json"), "key": idempotency_key}

    @app.post("/read")
    @reads_json_body(JobCreate)
    async def read(request: Request):
        check_json_media_type(request)
        key, errors = read_header(request, IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_TYPE)
        body = await read_json_body(request, JobCreate, errors)
        return {"body": body.model_dump(mode="json"), "key": key}

    return BodySizeLimitMiddleware(app, max_request_bytes=LIMIT, max_upload_bytes=LIMIT)


JSON = {"content-type": "application/json"}
GOOD = json.dumps({"kind": "deconvnet", "model": "m", "params": {"a": 1}}).encode()
CASES = {
    "good": (GOOD, JSON),
    "good with a key": (GOOD, {**JSON, "Idempotency-Key": "k-1"}),
    "json with a charset": (GOOD, {"content-type": "application/json; charset=utf-8"}),
    "empty body": (b"", JSON),
    "not json": (b"{not json", JSON),
    "json null": (b"null", JSON),
    "a list": (b"[1, 2]", JSON),
    "a string": (b'"deconvnet"', JSON),
    "unknown field": (b'{"kind": "x", "model": "m", "kindd": 1}', JSON),
    "missing fields": (b"{}", JSON),
    "wrong types": (b'{"kind": 1, "model": "", "params": [], "timeout_seconds": 0}', JSON),
    "NaN in params": (b'{"kind": "x", "model": "m", "params": {"a": NaN}}', JSON),
    "nested 50,000 deep": (b"[" * 50_000 + b"]" * 50_000, JSON),
    "a 5001-digit integer": (b'{"kind": "x", "model": "m", "params": {"a": 1' + b"0" * 5000 + b"}}", JSON),
    "too large": (b" " * (LIMIT + 1), JSON),
    "not utf-8": (b'{"kind": "\xff", "model": "m"}', JSON),
    "text/plain": (GOOD, {"content-type": "text/plain"}),
    "no content type": (GOOD, {}),
    "a key of 300 characters": (GOOD, {**JSON, "Idempotency-Key": "k" * 300}),
    "an empty key": (GOOD, {**JSON, "Idempotency-Key": ""}),
    "an empty key and a bad body": (b'{"kind": 1}', {**JSON, "Idempotency-Key": ""}),
    "an empty key and no body": (b"", {**JSON, "Idempotency-Key": ""}),
    "an empty key and bad json": (b"{", {**JSON, "Idempotency-Key": ""}),
}


@pytest.mark.parametrize("case", CASES)
async def test_reading_the_body_itself_answers_what_fastapi_answers(case):
    content, headers = CASES[case]
    transport = httpx.ASGITransport(app=both_ways())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        declared = await client.post("/declared", content=content, headers=headers)
        read = await client.post("/read", content=content, headers=headers)
    assert (read.status_code, read.headers["content-type"]) == (declared.status_code, declared.headers["content-type"])
    if declared.headers["content-type"].startswith("application/problem+json"):
        ours, theirs = read.json(), declared.json()
        ours.pop("instance", None), theirs.pop("instance", None)
        assert ours == theirs
    else:
        assert read.json() == declared.json()
