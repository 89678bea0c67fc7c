"""The fast tier's store: the job store in this process against the session's redis-server,
each test in a namespace of its own (no API or worker processes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from service.blob_leases import BlobLeases
from service.jobstore import ArtifactFiles, JobRuns, JobStore, Reaper
from service.settings import Settings
from service.storage import FileBlobStore


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        namespace=f"f{uuid.uuid4().hex[:10]}",
        max_concurrent_jobs_per_tenant=2,
        worker_lost_after_seconds=1.0,
        worker_lost_retries=1,
        reaper_interval_seconds=0.2,
    )


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(connection: redis.Redis, settings: Settings) -> JobStore:
    return JobStore(connection, settings)


@pytest.fixture
def runs(store: JobStore) -> JobRuns:
    return JobRuns(store)


@pytest.fixture
def files(store: JobStore, tmp_path) -> ArtifactFiles:
    return ArtifactFiles(FileBlobStore(tmp_path / "blobs"), BlobLeases(store.redis, store.keys))


@pytest.fixture
def reaper(runs: JobRuns, files: ArtifactFiles) -> Reaper:
    return Reaper(runs, owner="test-reaper", files=files.store)


def new_job(store: JobStore, tenant: str = "alice", **overrides) -> str:
    fields = {"kind": "k", "model": "m", "params": {"p": 1}, "metadata": {"m": "x"}, "timeout_seconds": 60}
    fields.update(overrides)
    return store.create(tenant, **fields).job_id
