"""The API's create, on the asyncio Redis client: the same CREATE script as `JobStore.create`, in
one round trip and without a trip to a worker thread.

Creates are the API's slowest operation under load when each one holds a thread of the pool for
its several round trips (record, admission, RQ's enqueue, reading the job back); here the event
loop sends one script and answers from the record it built. Creates that reach Redis in the same
turn of the event loop (concurrent clients) share one pipeline: each is still its own script,
atomic and answered on its own, but a burst pays one write and one read of the socket instead
of one per job (on the 2-core test machine, a Redis round trip costs the API more CPU than
everything else a create does).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from service.jobstore import scripts
from service.jobstore.store import CreateOutcome, JobStore, NewJob


class AsyncJobCreates:
    def __init__(self, store: JobStore, connection: redis.asyncio.Redis):
        self.store = store
        self.redis = connection
        self._create = scripts.CREATE.bind(connection)
        self._waiting: list[tuple[NewJob, asyncio.Future]] = []
        self._flushing: set[asyncio.Task] = set()  # held: the loop keeps only weak references

    async def create(self, tenant: str, **fields: Any) -> CreateOutcome:
        """`JobStore.create`, async: takes the same arguments and returns the same outcome."""
        new = self.store.new_job(tenant, **fields)
        outcome = self.store.create_outcome(new, await self._send(new))
        if outcome.unqueued:  # jobs of a version before RQ hashes were written at create: RQ's enqueue
            await asyncio.to_thread(lambda: [self.store.enqueue(job_id) for job_id in outcome.unqueued])
        return outcome

    async def _send(self, new: NewJob) -> Any:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self._waiting.append((new, reply))
        if len(self._waiting) == 1:  # the first of this turn sends them all, at the end of the turn
            loop.call_soon(self._start_flush)
        return await reply

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self._create(**batch[0][0].script_args)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for new, _ in batch:
                    self._create.queue(pipe, **new.script_args)
                replies = await pipe.execute(raise_on_error=False)
                for position, (new, _) in enumerate(batch):
                    if isinstance(replies[position], NoScriptError):  # Redis restarted: load it again
                        try:
                            replies[position] = await self._create(**new.script_args)
                        except Exception as exc:  # noqa: BLE001 - handed to that create's caller
                            replies[position] = exc
        except Exception as exc:  # noqa: BLE001 - every create of the batch fails with it
            replies = [exc] * len(batch)
        for (_, reply), value in zip(batch, replies, strict=True):
            if reply.done():
                continue
            if isinstance(value, BaseException):
                reply.set_exception(value)
            else:
                reply.set_result(value)
