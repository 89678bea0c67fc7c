"""The create path keeps the catalog records a create names between creates: a change to one is
seen by the very next create, whatever the API kept."""

from __future__ import annotations

import pytest

from service.catalogs import BUILTIN_SCOPE, ModelCatalog

pytestmark = pytest.mark.anyio

PROBE = "probe-model"


def probe_record(units: int) -> dict:
    return {"id": PROBE, "kind": "test", "layers": [{"name": "a", "units": units, "output_shape": [units]}]}


async def probe(api, unit: int):
    body = {"kind": "test-layer-probe", "model": PROBE, "params": {"layer": "a", "units": [unit]}}
    return await api.alice.post("/v1/jobs", json=body)


async def test_a_catalog_change_is_seen_by_the_next_create(api):
    catalog = ModelCatalog(api.store.redis, api.settings)
    catalog.put(BUILTIN_SCOPE, PROBE, probe_record(4))
    assert (await probe(api, 3)).status_code == 202  # the record is now kept by the API
    refused = await probe(api, 5)
    assert refused.status_code == 422 and refused.json()["errors"][0]["type"] == "unit-out-of-range"
    catalog.put(BUILTIN_SCOPE, PROBE, probe_record(8))  # more units: the kept record would refuse
    assert (await probe(api, 5)).status_code == 202
    catalog.put(BUILTIN_SCOPE, PROBE, probe_record(2))  # fewer: the kept record would accept
    assert (await probe(api, 3)).status_code == 422
    catalog.remove(BUILTIN_SCOPE, PROBE)
    gone = await probe(api, 0)
    assert gone.status_code == 422 and gone.json()["errors"][0]["loc"] == ["body", "model"]
    created = (await api.alice.get("/v1/jobs")).json()["items"]
    assert [job["params"]["units"] for job in created] == [[5], [3]]  # newest first


async def test_a_tenant_s_own_record_takes_over_from_the_built_in_one(api):
    catalog = ModelCatalog(api.store.redis, api.settings)
    catalog.put(BUILTIN_SCOPE, PROBE, probe_record(8))
    assert (await probe(api, 5)).status_code == 202
    catalog.put("alice", PROBE, probe_record(4))
    assert (await probe(api, 5)).status_code == 422
    assert (await api.bob.post("/v1/jobs", json={"kind": "test-layer-probe", "model": PROBE,
                                                 "params": {"layer": "a", "units": [5]}})).status_code == 202  # fmt: skip


async def test_concurrent_creates_each_get_their_own_job_also_after_redis_lost_its_scripts(api):
    """Creates that reach Redis together share one pipeline; each is answered with its own job,
    queued on RQ, including when Redis forgot the script (a restart) and it is loaded again."""
    from rq.job import Job as RQJob

    async def create(n: int) -> dict:
        return await api.create({"steps": n})

    for flush_scripts in (False, True):
        if flush_scripts:
            api.store.redis.script_flush()
        jobs = await anyio_gather([lambda n=n: create(n) for n in range(12)])
        assert sorted(job["params"]["steps"] for job in jobs) == list(range(12))
        for job in jobs:
            read = (await api.alice.get(f"/v1/jobs/{job['id']}")).json()
            assert read["params"] == job["params"] and RQJob.exists(job["id"], connection=api.store.redis)
    assert len({job["id"] for job in (await api.alice.get("/v1/jobs?page_size=50")).json()["items"]}) == 24


async def anyio_gather(calls):
    import asyncio

    return await asyncio.gather(*(call() for call in calls))
