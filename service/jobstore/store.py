"""Job records as clients change them: create, read, list, cancel, delete; and admission onto RQ.

Why a record layer over RQ at all: RQ's own job hash cannot carry what the API promises
(atomic, ownership-checked transitions that publish artifacts with the status, a per-tenant
concurrency limit, idempotency keys, cooperative cancel of a job running in-process, loss
detection within seconds). RQ still does what it is good at: the queue and the workers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.utils import utcformat

from service.jobspec import Job, JobStatus
from service.jobstore import scripts
from service.jobstore.fanout import FANOUT_OWNER
from service.jobstore.ids import encode_page_token, new_job_id
from service.jobstore.record import JobRecord, _text
from service.jobstore.stats import job_stats
from service.keys import Keys
from service.settings import Settings
from service.webhooks import WebhookOutbox

RUN_JOB_FUNCTION = "worker.tasks.run_job"
# RQ's own timeout is a backstop behind the cooperative one checked between steps.
RQ_TIMEOUT_GRACE_SECONDS = 30
# An admitted job that RQ does not know after this long was lost between admission and enqueue.
ENQUEUE_REPAIR_AFTER_SECONDS = 5.0
# RQ job hashes built by RQ, kept per shape of job (see JobStore.rq_job_fields).
_RQ_TEMPLATES = 256
_RQ_ID_PLACEHOLDER = "rq-job-id-placeholder-0123456789"


@dataclass(frozen=True)
class CreateOutcome:
    job_id: str
    created: bool
    fingerprint_matches: bool = True
    # The new job's record as written (None for a replayed idempotency key): what the API answers
    # with, without reading it back.
    record: JobRecord | None = None
    # Jobs this create's admission let in that have no RQ job hash (created by a version before
    # the hash was written at create): they still have to be handed to RQ (`JobStore.enqueue`).
    unqueued: tuple[str, ...] = ()
    # A catalog record the job was planned against changed: nothing was created.
    stale: bool = False


class CatalogCheck(NamedTuple):
    """A catalog record a create was planned against, checked by the CREATE script: the
    tenant's catalog key, the built-in one (read when the tenant has no such record), the record
    id and the sha1 of the record's JSON as read."""

    own_key: str
    builtin_key: str
    record_id: str
    digest: str


@dataclass(frozen=True)
class NewJob:
    """A create, ready to send: the record, and the named arguments of the CREATE script."""

    record: JobRecord
    script_args: dict[str, Any] = field(repr=False)


class CancelOutcome:
    CANCELED = "canceled"
    REQUESTED = "requested"
    MISSING = "missing"


class JobStore:
    """Every read of job records, and the transitions clients ask for. Used by the API and by
    workers alike (workers use `service.jobstore.runs.JobRuns` for theirs)."""

    def __init__(self, connection: redis.Redis, settings: Settings):
        self.redis = connection
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
        self.webhooks = WebhookOutbox(connection, settings)
        self._rq_templates: dict[tuple[int, str], tuple[dict[str, Any], bytes]] = {}
        self._create = scripts.CREATE.bind(connection)
        self._admit = scripts.ADMIT.bind(connection)
        self._cancel = scripts.CANCEL.bind(connection)
        self._delete = scripts.DELETE.bind(connection)

    # ---- reads -------------------------------------------------------------------------

    def record(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        return JobRecord.from_redis(job_id, raw) if raw else None

    def get(self, tenant: str, job_id: str) -> Job | None:
        """The tenant's job, or None (also when it belongs to another tenant)."""
        record = self.record(job_id)
        if record is None or record.tenant != tenant:
            return None
        return record.to_job()

    def list(
        self,
        tenant: str,
        *,
        page_size: int,
        after: str | None = None,
        status: JobStatus | None = None,
        kind: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page, newest first. A filtered page may hold fewer than `page_size` jobs; only a
        missing next token means the end."""
        index = self.keys.tenant_jobs(tenant)
        upper = f"({after}" if after else "+"
        found: list[Job] = []
        scan_budget = max(page_size * 20, 200)
        last_seen: str | None = None
        while len(found) < page_size and scan_budget > 0:
            batch = min(max(page_size * 2, 50), scan_budget)
            ids = [_text(i) for i in self.redis.zrevrangebylex(index, upper, "-", start=0, num=batch)]
            if not ids:
                return found, None
            scan_budget -= len(ids)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            gone = []
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                last_seen = job_id
                if not raw:
                    gone.append(job_id)  # expired or deleted: drop it from the index
                    continue
                record = JobRecord.from_redis(job_id, raw)
                if (status is not None and record.status != status) or (kind is not None and record.kind != kind):
                    continue
                found.append(record.to_job())
                if len(found) == page_size:
                    break
            if gone:
                self.redis.zrem(index, *gone)
            upper = f"({last_seen}"
            if len(ids) < batch and len(found) < page_size:
                return found, None
        if last_seen is None:
            return found, None
        # Whether anything follows is only known by looking; an extra empty page is avoided.
        more = self.redis.zrevrangebylex(index, f"({last_seen}", "-", start=0, num=1)
        return found, encode_page_token(last_seen) if more else None

    def live_workers(self) -> list[str]:
        since = time.time() - self.settings.worker_lost_after_seconds
        return [_text(w) for w in self.redis.zrangebyscore(self.keys.workers, since, "+inf")]

    def stats(self) -> dict[str, Any]:
        """Deployment-wide counts for /metrics (see stats.py)."""
        return job_stats(self.redis, self.keys, self.queue.key, self.settings.worker_lost_after_seconds)

    # ---- client transitions -----------------------------------------------------------

    def new_job(
        self,
        tenant: str,
        *,
        kind: str,
        model: str,
        params: dict[str, Any],
        metadata: dict[str, Any],
        timeout_seconds: int,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        webhook: dict[str, Any] | None = None,
        catalog_checks: Sequence[CatalogCheck] = (),
    ) -> NewJob:
        """Everything a create sends, built without Redis (the sync `create` and the API's async
        one send the same script: service/jobstore/creates.py). `catalog_checks`: the records
        the job was planned against, which must not have changed (else the outcome is `stale`)."""
        now = time.time()
        job_id = new_job_id(now)
        record = JobRecord(
            id=job_id,
            tenant=tenant,
            kind=kind,
            model=model,
            status=JobStatus.queued,
            params=params,
            metadata=metadata,
            created_at=now,
            timeout_seconds=timeout_seconds,
            message="queued",
            webhook=webhook,
        )
        fields = [item for check in catalog_checks for item in (check.record_id, check.digest)]
        record_fields = [item for pair in record.to_redis().items() for item in pair]
        fields += record_fields
        fields += [item for pair in self.rq_job_fields(record).items() for item in pair]
        script_args = dict(
            job_key=self.keys.job(job_id),
            rq_pending=self.keys.rq_pending(job_id),
            tenant_jobs=self.keys.tenant_jobs(tenant),
            idem_key=self.keys.idempotency(tenant, idempotency_key) if idempotency_key else "",
            stats=self.keys.job_stats,
            tenants=self.keys.tenants,
            job_id=job_id,
            has_idem=bool(idempotency_key),
            fingerprint=fingerprint,
            idem_ttl=self.settings.result_ttl_seconds,
            stat_field=f"{kind}|queued",
            **self.admission_args(tenant),
            checks=len(catalog_checks),
            record_length=len(record_fields),
            catalog_keys=[key for check in catalog_checks for key in (check.own_key, check.builtin_key)],
            fields=fields,
        )
        return NewJob(record, script_args)

    @staticmethod
    def create_outcome(new: NewJob, reply: list[Any]) -> CreateOutcome:
        """What the CREATE script's reply means."""
        outcome, stored_id, stored_fingerprint, *unqueued = (_text(v) for v in reply)
        if outcome == "existing":
            return CreateOutcome(
                stored_id, created=False, fingerprint_matches=stored_fingerprint == new.script_args["fingerprint"]
            )
        if outcome == "stale":
            return CreateOutcome(stored_id, created=False, stale=True)
        return CreateOutcome(stored_id, created=True, record=new.record, unqueued=tuple(unqueued))

    def create(self, tenant: str, **fields: Any) -> CreateOutcome:
        """A new job, queued on RQ at once if the tenant is under its limit (else it waits for
        admission). Takes `new_job`'s arguments. One round trip."""
        new = self.new_job(tenant, **fields)
        outcome = self.create_outcome(new, self._create(**new.script_args))
        for job_id in outcome.unqueued:
            self.enqueue(job_id)
        return outcome

    def cancel(self, tenant: str, job_id: str) -> tuple[str, Job | None]:
        """Cancel now if queued, ask the worker if running. Returns (outcome, job after it)."""
        if self.get(tenant, job_id) is None:
            return CancelOutcome.MISSING, None
        outcome = _text(
            self._cancel(
                job_key=self.keys.job(job_id),
                waiting=self.keys.tenant_waiting(tenant),
                active=self.keys.tenant_active(tenant),
                stats=self.keys.job_stats,
                rq_pending=self.keys.rq_pending(job_id),
                job_id=job_id,
                now=repr(time.time()),
                ttl=self.settings.result_ttl_seconds,
                channel=self.keys.events(job_id),
            )
        )
        after = self.get(tenant, job_id)
        if outcome == CancelOutcome.REQUESTED and after is not None:
            record = self.record(job_id)
            if record is not None and record.worker == FANOUT_OWNER:
                # No worker runs a handed-over job: it ends now, and its steps with it.
                from service.jobstore.runs import JobRuns

                JobRuns(self).fanout.end(record, JobStatus.canceled)
                return CancelOutcome.CANCELED, self.get(tenant, job_id)
        if outcome == CancelOutcome.CANCELED:
            self._cancel_on_rq(job_id)
            self.admit(tenant)
            self.notify(tenant, after)
        return outcome, after

    def _cancel_on_rq(self, job_id: str) -> None:
        """Take a canceled job off RQ's queue (a worker that dequeues it first skips it anyway:
        it is no longer `queued` in its record)."""
        try:
            RQJob.fetch(job_id, connection=self.redis, serializer=JSONSerializer).cancel()
        except (NoSuchJobError, InvalidJobOperation):
            pass  # never admitted onto RQ (waiting for the tenant's limit), or already gone

    def delete(self, tenant: str, job_id: str) -> str:
        """'deleted', 'missing', or the unfinished status that prevents it."""
        record = self.record(job_id)
        if record is None or record.tenant != tenant:
            return "missing"
        legacy = not record.artifacts_prefix
        artifact_keys = [self.keys.artifact(job_id, a.name) for a in record.artifacts]
        return _text(
            self._delete(
                job_key=self.keys.job(job_id),
                tenant_jobs=self.keys.tenant_jobs(tenant),
                leases=self.keys.blob_leases,
                job_id=job_id,
                channel=self.keys.events(job_id),
                artifact_keys=artifact_keys if legacy else [],
            )
        )

    def notify(self, tenant: str, job: Job | None) -> None:
        """Queue the job's webhook delivery for its new status, if it asked for one."""
        if job is not None and job.webhook is not None:
            self.webhooks.queue(tenant, job.webhook.model_dump(), job.status.value, job.model_dump(mode="json"))

    # ---- admission onto RQ -----------------------------------------------------------

    def admit(self, tenant: str) -> list[str]:
        """Move the tenant's waiting jobs onto RQ while it is under its concurrency limit (the
        script hands them to RQ itself); returns those that had no RQ job hash, which are queued
        here (jobs created by a version before the hash was written at create)."""
        unqueued = [_text(job_id) for job_id in self._admit(**self.admission_args(tenant))]
        for job_id in unqueued:
            self.enqueue(job_id)
        return unqueued

    def admission_args(self, tenant: str) -> dict[str, Any]:
        """The keys and arguments of the scripts that admit waiting jobs (CREATE, FINISH, ADMIT)."""
        return {
            "waiting": self.keys.tenant_waiting(tenant),
            "active": self.keys.tenant_active(tenant),
            "tenants_waiting": self.keys.tenants_waiting,
            "limit": self.settings.max_concurrent_jobs_per_tenant,
            "job_prefix": self.keys.job_prefix,
            "tenant": tenant,
            "pending_prefix": self.keys.rq_pending_prefix,
            "rq_job_prefix": RQJob.redis_job_namespace_prefix,
            "rq_queue": self.queue.key,
            "rq_queues": self.queue.redis_queues_keys,
        }

    def enqueue(self, job_id: str, *, after_dependencies: bool = True) -> None:
        """Hand the job to RQ; a fan-out step waits there for the steps it depends on, unless
        `after_dependencies` is False (the reaper's repair: they have ended)."""
        record = self.record(job_id)
        if record is None:
            return
        self.queue.enqueue_call(
            func=RUN_JOB_FUNCTION,
            args=(job_id,),
            job_id=job_id,
            # A fan-out's merge step runs once RQ has run every shard it waits for.
            depends_on=(record.after or None) if after_dependencies else None,
            **self._rq_options(record),
        )

    def _rq_options(self, record: JobRecord) -> dict[str, Any]:
        return {
            "timeout": record.timeout_seconds + RQ_TIMEOUT_GRACE_SECONDS,
            "result_ttl": 0,
            "failure_ttl": self.settings.result_ttl_seconds,
            "description": f"{record.kind} on {record.model}",
        }

    def rq_job_fields(self, record: JobRecord) -> dict[str, Any]:
        """RQ's job hash for a job without dependencies, as `enqueue` would have RQ write it; the
        CREATE script writes it and queues the id in the same step as the record.

        RQ's own code builds it once per shape of job (timeout, description); a job then differs
        only in its id, inside the compressed call data, and its times (RQ's job constructor is
        most of a create's CPU otherwise). tests/service/jobstore/test_create.py holds it to what
        RQ writes itself."""
        options = self._rq_options(record)
        shape = (options["timeout"], options["description"])
        template = self._rq_templates.get(shape)
        if template is None:
            job = self.queue.create_job(
                RUN_JOB_FUNCTION, args=(_RQ_ID_PLACEHOLDER,), job_id=_RQ_ID_PLACEHOLDER, **options
            )
            job.origin = self.queue.name
            job.enqueued_at = rq_now()
            fields = job.to_dict()
            call = zlib.decompress(fields["data"])
            if call.count(_RQ_ID_PLACEHOLDER.encode()) != 1:
                raise RuntimeError("RQ's call data does not hold the job id once")
            template = (fields, call)
            if len(self._rq_templates) < _RQ_TEMPLATES:
                self._rq_templates[shape] = template
        fields, call = template
        now = utcformat(rq_now())
        return {
            **fields,
            "created_at": now,
            "enqueued_at": now,
            "data": zlib.compress(call.replace(_RQ_ID_PLACEHOLDER.encode(), record.id.encode())),
        }

    def repair_admissions(self) -> int:
        """Admit waiting jobs of tenants that have room, and re-enqueue admitted jobs that never
        reached RQ (a crash between an admission and RQ's enqueue, possible only for jobs that
        the scripts could not hand to RQ themselves). Returns how many this call queued on RQ.
        A few round trips per tenant, whatever its number of jobs: the reaper runs it often."""
        enqueued = 0
        for tenant in [_text(t) for t in self.redis.smembers(self.keys.tenants_waiting)]:
            enqueued += len(self.admit(tenant))
        for tenant in [_text(t) for t in self.redis.smembers(self.keys.tenants)]:
            key = self.keys.tenant_active(tenant)
            ids = [_text(i) for i in self.redis.smembers(key)]
            if not ids:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "status", "created_at")
                pipe.exists(RQJob.key_for(job_id))
            found = pipe.execute()
            for job_id, (status, created_at), on_rq in zip(ids, found[::2], found[1::2], strict=True):
                if status is None:
                    self.redis.srem(key, job_id)
                elif _text(status) == JobStatus.queued and not on_rq:
                    if time.time() - float(created_at) > ENQUEUE_REPAIR_AFTER_SECONDS:
                        self.enqueue(job_id)
                        enqueued += 1
        return enqueued
