"""The API's create, on the asyncio Redis client: the same CREATE script as `JobStore.create`, in
one round trip and without a trip to a worker thread.

Creates are the API's slowest operation under load when each one holds a thread of the pool for
its several round trips (record, admission, RQ's enqueue, reading the job back); here the event
loop sends one script and answers from the record it built.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

from service.jobstore import scripts
from service.jobstore.store import CreateOutcome, JobStore


class AsyncJobCreates:
    def __init__(self, store: JobStore, connection: redis.asyncio.Redis):
        self.store = store
        self._create = scripts.CREATE.bind(connection)

    async def create(self, tenant: str, **fields: Any) -> CreateOutcome:
        """`JobStore.create`, async: takes the same arguments and returns the same outcome."""
        new = self.store.new_job(tenant, **fields)
        outcome = self.store.create_outcome(new, await self._create(**new.script_args))
        if outcome.unqueued:  # jobs of a version before RQ hashes were written at create: RQ's enqueue
            await asyncio.to_thread(lambda: [self.store.enqueue(job_id) for job_id in outcome.unqueued])
        return outcome
