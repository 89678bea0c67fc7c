"""A small typed Python client for the Glassbox API.

    from service.client import Client
    client = Client("http://127.0.0.1:8000", api_key=None)
    job = client.submit("deconvnet", "shapes-cnn", {"layer": "features.6", "dataset": "shapes-val"})
    job = client.wait(job.id, on_progress=lambda p: print(p.fraction, p.message))
    client.download(job, "out/")

Errors raise `GlassboxError` carrying the problem document's fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from service.catalogspec import DatasetInfo, ModelInfo, ModelSummary
from service.jobspec import Job, JobPage, Progress

DEFAULT_URL = "http://127.0.0.1:8000"


class GlassboxError(Exception):
    """An error answer of the API (RFC 9457 problem details), or a job that did not succeed."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        type: str = "",
        errors: list | None = None,
        url: str | None = None,
    ):
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.url = url  # the request that got this answer
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors = errors or []


class Client:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- jobs ------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        model: str,
        params: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        webhook: dict[str, Any] | None = None,
        timeout_seconds: int | None = None,
    ) -> Job:
        body: dict[str, Any] = {"kind": kind, "model": model, "params": params or {}, "metadata": metadata or {}}
        if webhook is not None:
            body["webhook"] = webhook
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.model_validate(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, status: str | None = None, kind: str | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job of the tenant, newest first, following the pages."""
        token = None
        while True:
            query = {"page_size": page_size, "status": status, "kind": kind, "page_token": token}
            page = JobPage.model_validate(
                self._json("GET", "/v1/jobs", params={k: v for k, v in query.items() if v is not None})
            )
            yield from page.items
            token = page.next_page_token
            if token is None:
                return

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        follow: bool = True,
    ) -> Job:
        """Until the job ends: follows its event stream, or polls honouring Retry-After.
        Returns the finished job (whatever its status)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if follow:
            try:
                job = self._follow(job_id, deadline, on_progress)
                if job is not None:
                    return job
            except (httpx.TransportError, httpx.StreamError):
                pass  # the stream broke: polling takes over
        while True:
            response = self._request("GET", f"/v1/jobs/{job_id}")
            job = Job.model_validate(response.json())
            if on_progress is not None:
                on_progress(job.progress)
            if job.status.is_terminal:
                return job
            pause = float(response.headers.get("Retry-After", "1"))
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after the timeout")
            time.sleep(pause)

    def _follow(self, job_id: str, deadline: float | None, on_progress) -> Job | None:
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        with connect_sse(
            self.http, "GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(self.http.timeout.connect, read=remaining or 60)
        ) as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise _problem(source.response)
            for event in source.iter_sse():
                if event.event == "progress" and on_progress is not None:
                    on_progress(Progress.model_validate_json(event.data))
                elif event.event == "status":
                    job = Job.model_validate_json(event.data)
                    if on_progress is not None:
                        on_progress(job.progress)
                    if job.status.is_terminal:
                        return job
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not finish before the timeout")
        return None

    def download(self, job: Job | str, folder: str | Path) -> list[Path]:
        """Every artifact of a succeeded job into `folder`; returns the paths written."""
        job = self.get(job) if isinstance(job, str) else job
        if job.result is None:
            raise GlassboxError(409, f"Job {job.id} has no artifacts", f"it is {job.status}")
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for artifact in job.result.artifacts:
            path = target / artifact.name
            path.write_bytes(self._request("GET", artifact.url).content)
            written.append(path)
        return written

    # ---- models and datasets ---------------------------------------------------------

    def models(self) -> list[ModelSummary]:
        return [ModelSummary.model_validate(m) for m in self._json("GET", "/v1/models")]

    def model(self, model_id: str) -> ModelInfo:
        return ModelInfo.model_validate(self._json("GET", f"/v1/models/{model_id}"))

    def upload_model(self, path: str | Path, manifest: dict[str, Any]) -> ModelInfo:
        path = Path(path)
        with path.open("rb") as handle:
            answer = self._json(
                "POST", "/v1/models", files={"file": (path.name, handle)}, data={"manifest": json.dumps(manifest)}
            )
        return ModelInfo.model_validate(answer)

    def datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo.model_validate(d) for d in self._json("GET", "/v1/datasets")]

    def upload_dataset(self, path: str | Path, name: str | None = None) -> DatasetInfo:
        path = Path(path)
        with path.open("rb") as handle:
            answer = self._json("POST", "/v1/datasets", files={"file": (path.name, handle)}, data={"name": name} if name else {})
        return DatasetInfo.model_validate(answer)

    # ---- plumbing --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _problem(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()


def _problem(response: httpx.Response) -> GlassboxError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return GlassboxError(
        response.status_code,
        body.get("title") or response.reason_phrase,
        body.get("detail") or "",
        body.get("type") or "",
        body.get("errors"),
        str(response.request.url),
    )
