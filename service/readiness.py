"""When the service can take a client's first job: what `/readyz` answers and `glassbox up` waits for.

A job naming a built-in model is refused (422 unknown model) until a worker has published the
built-in catalog, and it would sit in the queue while no worker is alive; so "ready" means Redis
answers, a worker is alive, and the built-in models and datasets a worker registers at start are
in the catalog. A worker records what it registered (`mark_builtins_registered`) once it has put
every record; the record outlives the worker, like the catalog itself, so a second worker or a
restart does not make a ready service unready while it registers again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from service.catalogs import BUILTIN_SCOPE, DatasetCatalog, ModelCatalog
from service.settings import Settings


def builtins_key(settings: Settings) -> str:
    return f"{settings.namespace}:catalog:builtins-registered"


def mark_builtins_registered(
    connection: redis.Redis, settings: Settings, *, models: list[str], datasets: list[str]
) -> None:
    connection.set(builtins_key(settings), json.dumps({"models": sorted(models), "datasets": sorted(datasets)}))


@dataclass(frozen=True)
class Readiness:
    """`waiting_for` is None when ready, else one sentence saying what is missing and what to do."""

    waiting_for: str | None
    workers: int = 0
    retry_after_seconds: int = 2

    @property
    def ready(self) -> bool:
        return self.waiting_for is None


def check_readiness(
    connection: redis.Redis,
    live_workers: list[str],
    models: ModelCatalog,
    datasets: DatasetCatalog,
    settings: Settings,
    *,
    supervised: bool,
) -> Readiness:
    """Raises redis errors (the caller says Redis does not answer)."""
    if not live_workers:
        if supervised:
            return Readiness(
                "Waiting for a worker: `glassbox up` is starting it (it registers the built-in models "
                "and datasets, then takes jobs)."
            )
        return Readiness(
            f"Waiting for a worker: none has sent a heartbeat in the last {settings.worker_lost_after_seconds:g} s. "
            "Start `glassbox worker` with this API's GLASSBOX_REDIS_URL and GLASSBOX_NAMESPACE (it "
            "registers the built-in models and datasets, then takes jobs)."
        )
    raw = connection.get(builtins_key(settings))
    registered = json.loads(raw) if raw else None
    missing = []
    if registered is not None:
        missing += [m for m in registered["models"] if models.get(BUILTIN_SCOPE, m) is None]
        missing += [d for d in registered["datasets"] if datasets.get(BUILTIN_SCOPE, d) is None]
    if registered is None or missing:
        what = f" ({', '.join(missing)} missing)" if missing else ""
        return Readiness(
            f"Waiting for the built-in models and datasets{what}: a worker registers them when it starts.",
            workers=len(live_workers),
        )
    return Readiness(None, workers=len(live_workers))


def redis_unavailable(*, supervised: bool) -> Readiness:
    where = "the private redis-server of `glassbox up`" if supervised else "the Redis at GLASSBOX_REDIS_URL"
    return Readiness(f"Waiting for Redis: {where} does not answer.", retry_after_seconds=5)
