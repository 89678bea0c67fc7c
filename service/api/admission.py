"""Every check a job request gets before it is queued, for create and estimate; and the same
checks on the event loop for the create path (no worker thread, and no round trip of its own
while the catalog records it names do not change: AsyncAdmission).

The plan (service/kinds/plan.py) needs the catalog records of the model and of the datasets the
params name; they are known once the params are validated, so the async path plans against a
snapshot of just those. Only what the snapshot cannot answer goes to a worker thread and the
sync checks: a request naming an unknown model or dataset (its 422 lists the catalog) and a
webhook (its URL check resolves the host name).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from service.api.problems import ProblemError
from service.catalogs import DatasetCatalog, ModelCatalog
from service.jobspec import JobCreate, JobKind
from service.jobstore.store import CatalogCheck
from service.keys import Keys
from service.kinds.plan import JobPlan, PlanRequest, plan_job, plan_request, read_request
from service.settings import BUILTIN_SCOPE, Settings
from service.validation import InvalidRequest, invalid
from service.webhooks import WebhookRefused, check_url


def admit(body: JobCreate, tenant: str, models: ModelCatalog, datasets: DatasetCatalog, kinds: dict[str, JobKind],
          settings: Settings) -> tuple[JobPlan, int]:  # fmt: skip
    """Every check a job request gets before it is queued (a 422 naming the field): the kind's
    plan and what only the API knows (its time limit, webhooks). Creating a job and estimating
    one run the same checks. Returns the plan and the timeout."""
    plan = plan_job(kinds, body.kind, body.params, body.model, tenant, models, datasets, settings)
    timeout = checked_timeout(body, settings)
    if body.webhook is not None:
        if not settings.webhook_secret:
            raise invalid(["body", "webhook"], "webhooks are not configured on this service (GLASSBOX_WEBHOOK_SECRET)")
        try:
            check_url(body.webhook.url, settings)
        except WebhookRefused as exc:
            raise invalid(["body", "webhook", "url"], str(exc), "webhook-refused") from exc
    return plan, timeout


def checked_timeout(body: JobCreate, settings: Settings) -> int:
    timeout = body.timeout_seconds or settings.job_timeout_seconds
    if timeout > settings.job_timeout_seconds:
        raise invalid(
            ["body", "timeout_seconds"],
            f"at most {settings.job_timeout_seconds} (GLASSBOX_JOB_TIMEOUT_SECONDS)",
            "limit-exceeded",
        )
    return timeout


@dataclass(frozen=True)
class Admitted:
    """A create request that passed every check: its plan, its time limit, and the catalog
    records it was planned against (which the CREATE script checks have not changed)."""

    plan: JobPlan
    timeout: int
    checks: tuple[CatalogCheck, ...] = ()


class AsyncAdmission:
    """`admit` for the create path, on the event loop where it can be: the same checks and the
    same errors in the same order.

    The catalog records a create names are kept between creates and sent back as digests with
    the create, which the CREATE script compares with the records as they are then: a create
    costs one round trip while the records it names do not change, and a change is never missed
    (the create comes back `stale` and is planned again from records read afresh). A request
    refused on kept records is planned again from fresh ones before the refusal is answered."""

    def __init__(self, connection: redis.asyncio.Redis, keys: Keys, max_records: int = 4096):
        self.redis = connection
        self.keys = keys
        self.max_records = max_records
        self._records: dict[tuple[str, str, str], tuple[dict[str, Any], str]] = {}

    async def admit(self, body: JobCreate, tenant: str, state: Any, *, fresh: bool = False) -> Admitted:
        settings: Settings = state.settings

        def sync() -> Admitted:
            return Admitted(*admit(body, tenant, state.catalog, state.datasets, state.kinds, settings))

        if body.webhook is not None:  # its URL check resolves the host name: a worker thread
            return await asyncio.to_thread(sync)
        request = read_request(state.kinds, body.kind, body.params, body.model, settings)
        wanted = [(ModelCatalog.collection, request.model_ref.id)]
        wanted += [(DatasetCatalog.collection, use.dataset_id) for use in request.dataset_uses]
        kept = None if fresh else self._kept(tenant, wanted)
        if kept is not None:
            try:
                return self._plan(body, request, tenant, settings, kept)
            except NotInSnapshot:
                pass
            except (InvalidRequest, ProblemError):
                pass  # refused on kept records: answered from fresh ones only
        try:
            return self._plan(body, request, tenant, settings, await self._read(tenant, wanted))
        except NotInSnapshot:  # an unknown model or dataset: its 422 lists the catalog
            return await asyncio.to_thread(sync)

    def forget(self, tenant: str, checks: tuple[CatalogCheck, ...]) -> None:
        """Drop kept records (the CREATE script found one changed)."""
        for check in checks:
            for collection in (ModelCatalog.collection, DatasetCatalog.collection):
                self._records.pop((collection, tenant, check.record_id), None)

    def _plan(self, body: JobCreate, request: PlanRequest, tenant: str, settings: Settings,
              records: dict[tuple[str, str], tuple[dict[str, Any], str] | None]) -> Admitted:  # fmt: skip
        def snapshot(collection: str) -> CatalogSnapshot:
            return CatalogSnapshot(
                {
                    record_id: found[0] if found else None
                    for (kind, record_id), found in records.items()
                    if kind == collection
                }
            )

        plan = plan_request(request, tenant, snapshot(ModelCatalog.collection), snapshot(DatasetCatalog.collection))
        checks = tuple(
            CatalogCheck(
                self.keys.catalog(collection, tenant), self.keys.catalog(collection, BUILTIN_SCOPE), record_id, found[1]
            )
            for (collection, record_id), found in records.items()
            if found is not None
        )
        return Admitted(plan, checked_timeout(body, settings), checks)

    def _kept(
        self, tenant: str, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[dict[str, Any], str]] | None:
        kept = {}
        for collection, record_id in wanted:
            found = self._records.get((collection, tenant, record_id))
            if found is None:
                return None
            kept[(collection, record_id)] = found
        return kept

    async def _read(
        self, tenant: str, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[dict[str, Any], str] | None]:
        """The records, each the tenant's own else the built-in one, in one round trip; kept."""
        pipe = self.redis.pipeline(transaction=False)
        for collection, record_id in wanted:
            pipe.hget(self.keys.catalog(collection, tenant), record_id)
            pipe.hget(self.keys.catalog(collection, BUILTIN_SCOPE), record_id)
        values = await pipe.execute()
        read: dict[tuple[str, str], tuple[dict[str, Any], str] | None] = {}
        for position, (collection, record_id) in enumerate(wanted):
            own, builtin = values[2 * position], values[2 * position + 1]
            raw = own if own is not None else builtin
            if raw is None:
                read[(collection, record_id)] = None
                self._records.pop((collection, tenant, record_id), None)
                continue
            found = (json.loads(raw), hashlib.sha1(raw).hexdigest())
            read[(collection, record_id)] = found
            if len(self._records) >= self.max_records:
                self._records.clear()  # rebuilt by the next creates: cheaper than ordering entries
            self._records[(collection, tenant, record_id)] = found
        return read


class NotInSnapshot(Exception):
    """The plan asked for more of a catalog than was read ahead (only its errors do)."""


class CatalogSnapshot:
    """The records of some ids of one catalog, read ahead, each as `Catalog.get` returns it
    (the tenant's own, else the built-in one; None when neither exists)."""

    def __init__(self, records: dict[str, dict[str, Any] | None]):
        self._records = records

    def get(self, tenant: str, record_id: str) -> dict[str, Any] | None:
        if record_id not in self._records:
            raise NotInSnapshot(record_id)
        return self._records[record_id]

    def ids(self, tenant: str) -> list[str]:
        raise NotInSnapshot("ids")

    def records(self, tenant: str) -> list[dict[str, Any]]:
        raise NotInSnapshot("records")
