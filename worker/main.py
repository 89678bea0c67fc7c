"""The worker process: an RQ SimpleWorker (jobs run in this process, no fork per job, so
models and CUDA state persist between jobs), a heartbeat thread, and a reconnect loop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from service.blob_leases import BlobLeases
from service.blobs import LegacyUploads
from service.catalogs import BUILTIN_SCOPE, DatasetCatalog, ModelCatalog
from service.catalogspec import ModelInfo
from service.jobstore import ArtifactFiles, JobRuns, JobStore, Reaper
from service.plugins import load_plugins
from service.readiness import mark_builtins_registered
from service.redis_connection import redis_options
from service.settings import Settings
from service.storage import open_blob_store
from service.uploaded_files import UploadedFiles
from worker.datasets import DatasetLoader
from worker.device import resolve_device
from worker.models.builtin import BUILTIN_MODELS, builtin_dataset_records
from worker.models.cache import ModelCache
from worker.models.loader import ModelLoader
from worker.models.torchvision_models import catalog_records as torchvision_records
from worker.runtime import WorkerRuntime, running_with

log = logging.getLogger("glassbox.worker")

RECONNECT_DELAY_SECONDS = 2.0
# RQ beats its worker key (an HSET and two EXPIREs, a round trip each) before and after every
# dequeue: for short jobs, the most Redis traffic a worker makes. The key lives minutes (RQ's
# worker_ttl) and Glassbox's liveness is its own Heartbeat; such a beat is sent at most this
# often, in one round trip.
RQ_BEAT_EVERY_SECONDS = 1.0


class GlassboxWorker(SimpleWorker):
    """Runs each job with the worker's runtime current, and exits after a sticky device error."""

    def __init__(self, *args, runtime: WorkerRuntime, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self._rq_beaten_at = float("-inf")

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None or timeout is not None:  # part of RQ's own pipelines, or a special TTL
            return super().heartbeat(timeout, pipeline=pipeline)
        if time.monotonic() - self._rq_beaten_at < RQ_BEAT_EVERY_SECONDS:
            return None
        with self.connection.pipeline(transaction=False) as beat:
            super().heartbeat(pipeline=beat)
            beat.execute()
        self._rq_beaten_at = time.monotonic()
        return None

    def execute_job(self, job, queue):
        with running_with(self.runtime):
            super().execute_job(job, queue)
        if self.runtime.exit_code is not None:
            raise SystemExit(self.runtime.exit_code)

    def handle_warm_shutdown_request(self):
        # The running job sees this at its next step and goes back to the queue.
        self.runtime.shutting_down.set()
        super().handle_warm_shutdown_request()


class Heartbeat(threading.Thread):
    """Says the worker is alive, and settles jobs of workers that are not (any live worker
    or API process does this, so lost jobs are noticed even when no API runs)."""

    def __init__(self, runtime: WorkerRuntime):
        super().__init__(name="glassbox-heartbeat", daemon=True)
        self.runtime = runtime
        self.stopped = threading.Event()

    def run(self) -> None:
        settings = self.runtime.settings
        reaper = Reaper(self.runtime.runs, owner=self.runtime.name, files=self.runtime.artifacts.store)
        next_reap = time.monotonic() + settings.reaper_interval_seconds
        while not self.stopped.is_set():
            try:
                self.runtime.runs.heartbeat(self.runtime.name)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + settings.reaper_interval_seconds
                    reaper.reap_if_elected()
            except redis.RedisError as exc:
                log.warning("heartbeat: redis unavailable: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
            self.stopped.wait(settings.worker_heartbeat_seconds)


def register_builtins(
    settings: Settings,
    models: ModelLoader,
    datasets: DatasetCatalog,
    plugin_models: list[dict],
    cache_dir: Path | None = None,
) -> None:
    """Publish what this worker can load, for the API to validate jobs against: the built-in
    models (inspected now: they are small, so their layers are listed from the start), the
    torchvision architectures (layers listed once a job has loaded one), plugin models and the
    built-in datasets; then records that they are registered (the API is ready from then on).
    Retries while Redis is not up yet, as at the start of a deployment."""
    catalog = models.catalog
    for attempt in range(30):
        try:
            for model in BUILTIN_MODELS.values():
                catalog.put(BUILTIN_SCOPE, model.id, model.catalog_record())
                try:
                    models.load(BUILTIN_SCOPE, model.id)
                except redis.ConnectionError:
                    raise
                except Exception as exc:  # a broken install must not take the worker down
                    log.exception("built-in model %s does not load", model.id)
                    catalog.put(BUILTIN_SCOPE, model.id, {**model.catalog_record(), "status": "failed", "error": str(exc)})
            for record in torchvision_records(cache_dir):
                catalog.put_if_absent(BUILTIN_SCOPE, record["id"], record)
            registered = list(BUILTIN_MODELS)
            for record in plugin_models:
                info = ModelInfo.model_validate({"name": record["id"], "source": "plugin", **record})
                catalog.put(BUILTIN_SCOPE, info.id, info.model_dump())
                registered.append(info.id)
            dataset_records = builtin_dataset_records()
            for record in dataset_records:
                datasets.put(BUILTIN_SCOPE, record["id"], record)
            mark_builtins_registered(
                catalog.redis,
                settings,
                models=registered,
                datasets=[record["id"] for record in dataset_records],
            )
            return
        except redis.ConnectionError as exc:
            log.warning("cannot register built-in models yet (%s); retrying", exc)
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
    raise SystemExit("redis stayed unreachable; giving up")


def worker_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def run_worker(settings: Settings) -> int:
    """Work until asked to stop. Returns the process exit code."""
    if not settings.redis_url:
        raise SystemExit("glassbox worker needs GLASSBOX_REDIS_URL")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connection = redis.Redis.from_url(settings.redis_url, **{**redis_options(), "socket_timeout": None})
    plugins = load_plugins(settings)
    device = resolve_device(settings.device)
    catalog = ModelCatalog(connection, settings)
    dataset_catalog = DatasetCatalog(connection, settings)
    store = JobStore(connection, settings)
    files = open_blob_store(settings)
    uploaded = UploadedFiles(connection, store.keys, files)
    runtime = WorkerRuntime(
        name=worker_name(),
        settings=settings,
        store=store,
        runs=JobRuns(store),
        artifacts=ArtifactFiles(files, BlobLeases(connection, store.keys)),
        kinds=plugins.kinds,
        device=device,
        models=ModelLoader(catalog, files, ModelCache(settings.model_cache_bytes), device),
        datasets=DatasetLoader(dataset_catalog, uploaded, settings.dataset_roots),
    )
    register_builtins(settings, runtime.models, dataset_catalog, plugins.models, Path(settings.data_dir) / "cache")
    log.info("worker %s on %s, kinds: %s", runtime.name, runtime.device, ", ".join(runtime.kinds) or "none")
    heartbeat = Heartbeat(runtime)
    heartbeat.start()
    try:
        # Jobs read uploads from the blob store: those of before it are moved first (by this
        # worker, or by whichever process took the lock; service/blobs.py).
        try:
            moved = LegacyUploads(connection, store.keys, uploaded, runtime.name).migrate(wait=True)
            if moved:
                log.warning("moved %d uploads of before the blob store into it", moved)
        except Exception:  # jobs on an upload not moved fail saying so; the next start tries again
            log.exception("moving uploads of before the blob store failed")
        while True:
            worker = GlassboxWorker(
                [runtime.store.queue],
                connection=connection,
                serializer=JSONSerializer,
                name=runtime.name,
                runtime=runtime,
            )
            try:
                worker.work(with_scheduler=False, logging_level=settings.log_level.upper())
            except redis.RedisError as exc:
                log.warning("redis unavailable (%s); reconnecting", exc)
            if runtime.shutting_down.is_set() or worker._stop_requested:
                return 0
            # RQ's loop ends on a Redis error; wait for Redis and start a fresh one.
            time.sleep(RECONNECT_DELAY_SECONDS)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        heartbeat.stopped.set()
        try:
            runtime.runs.forget_worker(runtime.name)
        except redis.RedisError:
            pass
