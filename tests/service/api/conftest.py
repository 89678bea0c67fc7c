"""The fast tier's API: the FastAPI app in this process on httpx.ASGITransport, against the
session's redis-server, each test in a namespace of its own. No API or worker processes: jobs
are moved along by the job store's worker transitions (service/jobstore/runs.py), called here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from service.app import create_app
from service.blob_leases import BlobLeases
from service.catalogs import BUILTIN_SCOPE, ModelCatalog
from service.jobspec import JobStatus
from service.jobstore import ArtifactBlob, ArtifactFiles, JobRuns, JobStore
from service.settings import Settings
from tests.conftest import ALICE, BOB, SESSION_DATA_DIR, TEST_KINDS_PLUGIN, TEST_MODEL


@dataclass
class Api:
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    store: JobStore
    runs: JobRuns
    files: ArtifactFiles
    settings: Settings

    def succeed(self, job_id: str, worker: str, artifacts: list[ArtifactBlob]) -> str:
        """What a worker does at the end of a job: write the artifacts, then finish."""
        prefix, refs = self.files.write(job_id, artifacts)
        return self.runs.finish(job_id, worker, JobStatus.succeeded, artifacts=refs, artifacts_prefix=prefix)

    async def create(self, params: dict | None = None, **body) -> dict:
        payload = {"kind": "test-lifecycle", "model": TEST_MODEL, "params": params or {}, **body}
        response = await self.alice.post("/v1/jobs", json=payload)
        assert response.status_code == 202, response.text
        return response.json()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    settings = Settings(
        redis_url=redis_url,
        namespace=f"api{uuid.uuid4().hex[:10]}",
        api_keys=f"alice:{ALICE},bob:{BOB}",
        plugins=[TEST_KINDS_PLUGIN],
        max_concurrent_jobs_per_tenant=0,
        data_dir=SESSION_DATA_DIR,
    )
    connection = redis.Redis.from_url(redis_url)
    ModelCatalog(connection, settings).put(BUILTIN_SCOPE, TEST_MODEL, {"id": TEST_MODEL, "kind": "test"})
    app = create_app(settings)
    store = JobStore(connection, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {ALICE}"}) as alice,
            httpx.AsyncClient(transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {BOB}"}) as bob,
        ):
            files = ArtifactFiles(app.state.blobs, BlobLeases(connection, store.keys))
            yield Api(alice, bob, store, JobRuns(store), files, settings)
    connection.close()
