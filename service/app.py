"""The FastAPI application factory and its lifespan (Redis pools, the reaper)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.api import artifacts, catalog, datasets, events, health, indexes, jobs
from service.api.admission import AsyncAdmission
from service.api.auth import declare_bearer_security
from service.api.body_size import BodySizeLimitMiddleware
from service.api.docs import mount_docs
from service.api.metrics import JobStatsCollector, RequestMetrics, RequestMetricsMiddleware
from service.api.problems import document_problems, install_problem_handlers
from service.api.web import mount_web
from service.atlases import AtlasCache
from service.blobs import LegacyUploads
from service.catalogs import DatasetCatalog, ModelCatalog
from service.indexes import IndexCatalog
from service.jobstore import AsyncJobCreates, AsyncJobReader, JobRuns, JobStore, Reaper
from service.plugins import load_plugins
from service.redis_connection import UNCONFIGURED_REDIS_URL, async_redis_from_url, redis_options
from service.settings import Settings
from service.spectra import SpectrumCatalog
from service.storage import open_blob_store
from service.uploaded_files import UploadedFiles
from service.webhooks import WebhookSender

log = logging.getLogger("glassbox.api")

async def run_reaper(reaper: Reaper, interval: float) -> None:
    """Settle jobs of dead workers even when no worker is left to do it (the API takes its turn
    in the election with the workers)."""
    while True:
        await asyncio.sleep(interval)
        try:
            counts = await asyncio.to_thread(reaper.reap_if_elected)
            if counts and any(counts.values()):
                log.warning("reaper: %s", counts)
        except redis.RedisError as exc:
            log.debug("reaper skipped, redis unavailable: %s", exc)
        except Exception:
            log.exception("reaper failed")


async def migrate_legacy_uploads(app: FastAPI) -> None:
    """Uploads of before the blob store go into it (service/blobs.py); the API
    takes its turn for the lock with the workers, and does not wait for another's move."""
    owner = f"api-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        legacy = LegacyUploads(app.state.redis, app.state.store.keys, app.state.uploaded_files, owner)
        moved = await asyncio.to_thread(legacy.migrate, wait=False)
        if moved:
            log.warning("moved %d uploads of before the blob store into it", moved)
    except redis.RedisError as exc:
        log.warning("uploads of before the blob store not moved yet (redis unavailable: %s); a worker moves them", exc)
    except Exception:
        log.exception("moving uploads of before the blob store failed; a worker tries again when it starts")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    plugins = load_plugins(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(run_reaper(app.state.reaper, settings.reaper_interval_seconds))
        migration = asyncio.create_task(migrate_legacy_uploads(app))
        job_events = asyncio.create_task(app.state.reader.run())
        sender = WebhookSender(app.state.redis, settings) if settings.webhook_secret else None
        if sender is not None:
            sender.start()
        if not settings.auth_enabled:
            log.warning("GLASSBOX_API_KEYS is empty: the API is open, every caller is tenant 'local'")
        try:
            yield
        finally:
            reaper.cancel()
            migration.cancel()
            job_events.cancel()
            if sender is not None:
                sender.stop()
            await app.state.async_redis.aclose()
            app.state.redis.close()

    app = FastAPI(
        title="Glassbox",
        version="1.0.0",
        summary="Shows what a neuron in a PyTorch model responds to.",
        description="Create visualization jobs, follow them, download their artifacts. "
        "Errors are `application/problem+json` (RFC 9457). Authenticate with "
        "`Authorization: Bearer <api key>` unless the service runs in open mode.",
        lifespan=lifespan,
        # Swagger UI from the installed package (no CDN): service/api/docs.py.
        docs_url=None,
        redoc_url=None,
    )
    url = settings.redis_url or UNCONFIGURED_REDIS_URL
    connection = redis.Redis.from_url(url, **redis_options())
    app.state.settings = settings
    app.state.kinds = plugins.kinds
    app.state.redis = connection
    # No socket_timeout here: on Python 3.11 redis.asyncio wraps every command in
    # asyncio.wait_for when one is set, which costs a task per command on the hottest path.
    app.state.async_redis = async_redis_from_url(url, **{**redis_options(), "socket_timeout": None})
    app.state.store = JobStore(connection, settings)
    app.state.blobs = open_blob_store(settings)
    app.state.reaper = Reaper(
        JobRuns(app.state.store), owner=f"api-{os.getpid()}-{uuid.uuid4().hex[:6]}", files=app.state.blobs
    )
    app.state.reader = AsyncJobReader(app.state.async_redis, app.state.store.keys)
    app.state.creates = AsyncJobCreates(app.state.store, app.state.async_redis)
    app.state.admission = AsyncAdmission(app.state.async_redis, app.state.store.keys)
    app.state.catalog = ModelCatalog(connection, settings)
    app.state.datasets = DatasetCatalog(connection, settings)
    app.state.indexes = IndexCatalog(connection, app.state.store.keys)
    app.state.atlases = AtlasCache(connection, app.state.store.keys)
    app.state.spectra = SpectrumCatalog(connection, app.state.store.keys)
    app.state.uploaded_files = UploadedFiles(connection, app.state.store.keys, app.state.blobs)
    registry = CollectorRegistry()
    registry.register(JobStatsCollector(app.state.store))
    app.state.metrics_registry = registry

    install_problem_handlers(app)
    build_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = build_openapi()
            declare_bearer_security(document)
            document_problems(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(artifacts.router)
    app.include_router(health.router)
    app.include_router(catalog.router)
    app.include_router(datasets.router)
    app.include_router(indexes.router)
    mount_web(app)
    mount_docs(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=RequestMetrics(registry))
    return app
