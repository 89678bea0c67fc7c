"""Every Redis key and channel name Glassbox uses, built in this one place.

All keys live under the deployment's namespace `ns` (GLASSBOX_NAMESPACE), so several
deployments can share one Redis:

  ns:job:{id}                  hash: one job record (see record.py for its fields)
  ns:tenant:{t}:jobs           sorted set, all scores 0: the tenant's job ids in id (= time) order
  ns:tenant:{t}:waiting        list: jobs over the tenant's concurrency limit, not yet on RQ
  ns:tenant:{t}:active         set: jobs handed to RQ (queued there or running)
  ns:tenants                   set: every tenant that ever created a job
  ns:tenants-waiting           set: tenants whose waiting list is not empty
  ns:running                   sorted set: running job ids by start time (for the reaper)
  ns:workers                   sorted set: worker names by last heartbeat time
  ns:fanouts                   sorted set: jobs handed over to their fan-out (shards + merge), by deadline
  ns:reaper-lock               string: held by the one process that reaps this interval
  ns:artifact:{id}:{name}      string: an artifact of before the blob store (read until it expires)
  ns:idem:{t}:{sha256(key)}    string: JSON {id, fingerprint} of an Idempotency-Key
  ns:events:{id}               pub/sub channel: status and progress of one job
  ns:stats:jobs                hash: `kind|status` -> jobs that reached that status
  ns:stats:duration            hash: `kind|bucket` -> finished jobs by run time
  ns:{collection}:{scope}      hash: catalog records (collection `models` or `datasets`)
  ns:blob-leases               sorted set: blob-store prefixes by when they may be deleted
  ns:blob:{collection}:{scope}:{id}   string: an uploaded file of before the blob store (migrated)
  ns:blob-migration-lock       string: held by the one process moving those files to the store
  ns:webhooks:...              webhook deliveries (see service/webhooks.py)
  {namespace}-jobs             RQ's queue (RQ keeps its own keys under `rq:`)
"""

from __future__ import annotations

import hashlib


class Keys:
    def __init__(self, namespace: str):
        self.ns = namespace

    # ---- jobs ------------------------------------------------------------------------

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    @property
    def job_prefix(self) -> str:
        return f"{self.ns}:job:"

    def rq_pending(self, job_id: str) -> str:
        """RQ's job hash of a job waiting for admission, written by its create; renamed to RQ's
        own key (`rq:job:{id}`) by the script that admits it (jobstore/scripts.py)."""
        return f"{self.rq_pending_prefix}{job_id}"

    @property
    def rq_pending_prefix(self) -> str:
        return f"{self.ns}:rq-pending:"

    def tenant_jobs(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:jobs"

    def tenant_waiting(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:waiting"

    def tenant_active(self, tenant: str) -> str:
        return f"{self.ns}:tenant:{tenant}:active"

    @property
    def tenants(self) -> str:
        return f"{self.ns}:tenants"

    @property
    def tenants_waiting(self) -> str:
        return f"{self.ns}:tenants-waiting"

    @property
    def running(self) -> str:
        return f"{self.ns}:running"

    @property
    def workers(self) -> str:
        return f"{self.ns}:workers"

    @property
    def fanouts(self) -> str:
        return f"{self.ns}:fanouts"

    @property
    def reaper_lock(self) -> str:
        return f"{self.ns}:reaper-lock"

    def artifact(self, job_id: str, name: str) -> str:
        return f"{self.ns}:artifact:{job_id}:{name}"

    def idempotency(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.ns}:idem:{tenant}:{digest}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:events:{job_id}"

    @property
    def all_events(self) -> str:
        return f"{self.ns}:events:*"

    @staticmethod
    def job_id_of_events(channel: str) -> str:
        return channel.rpartition(":")[2]

    @property
    def job_stats(self) -> str:
        return f"{self.ns}:stats:jobs"

    @property
    def duration_stats(self) -> str:
        return f"{self.ns}:stats:duration"

    # ---- catalogs and files ----------------------------------------------------------

    def catalog(self, collection: str, scope: str) -> str:
        return f"{self.ns}:{collection}:{scope}"

    @property
    def blob_leases(self) -> str:
        return f"{self.ns}:blob-leases"

    def blob(self, collection: str, scope: str, blob_id: str) -> str:
        return f"{self.ns}:blob:{collection}:{scope}:{blob_id}"

    @property
    def blob_migration_lock(self) -> str:
        return f"{self.ns}:blob-migration-lock"

    # ---- webhooks --------------------------------------------------------------------

    @property
    def webhooks_pending(self) -> str:
        return f"{self.ns}:webhooks:pending"

    @property
    def webhooks_retry(self) -> str:
        return f"{self.ns}:webhooks:retry"

    @property
    def webhook_senders(self) -> str:
        return f"{self.ns}:webhooks:senders"

    def webhooks_processing(self, sender: str) -> str:
        return f"{self.ns}:webhooks:processing:{sender}"
