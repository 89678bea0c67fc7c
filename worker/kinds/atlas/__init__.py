"""The `atlas` job: plan the layer's atlas and hand it over to steps on every worker.

The plan (service/kinds/atlas.py says what an atlas is): the layer's activation index, if it is
not built yet with enough exemplars per unit (its shards, then its merge, which publishes it and
leaves the job running); then one chunk step per `chunk_units` units that are not already stored
from an earlier run of the same atlas; then the assembly (worker/kinds/atlas/assemble.py). RQ
runs each step when the ones it waits for are done (service/jobstore/fanout.py).
"""

from __future__ import annotations

from service.atlases import AtlasCache
from service.indexes import IndexCatalog, dataset_identity, model_identity
from service.jobstore.fanout import Step
from service.kinds.atlas import AtlasParams, atlas_key, atlas_units, check_atlas, index_k
from worker.context import JobContext, JobFailed, JobOutput
from worker.indexes import IndexAccess
from worker.kinds.atlas.files import CHUNK_FILE, chunk_names


def run(ctx: JobContext, params: AtlasParams) -> JobOutput:
    ctx.progress(0.0, "planning the atlas", force=True)
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    record = loaded.record
    check_atlas(params, record)  # with the layers as loaded
    images = ctx.datasets.images(ctx.tenant, params.dataset)
    if len(images) == 0:
        raise JobFailed("invalid-params", "The dataset has no images", params.dataset)
    _, dataset_record = ctx.datasets.catalog.find(ctx.tenant, params.dataset)
    key = atlas_key(model_identity(record, ctx.model), dataset_identity(dataset_record), record["input"], params)
    cache = AtlasCache(ctx.runs.redis, ctx.runs.keys).folder(
        ctx.tenant, key, model=ctx.model, dataset=params.dataset, layer=params.layer
    )
    units = atlas_units(params, record)
    chunks = chunk_names(units, params.chunk_units)
    stored = {name for name in chunks if ctx.files.store.head(f"{cache}/{name}/{CHUNK_FILE}") is not None}
    job = ctx.runs.store.record(ctx.job_id)

    steps: list[Step] = []
    index_built = False
    waits_for: tuple[str, ...] = ()
    claims: list[str] = []
    if len(stored) < len(chunks):
        index_steps, waits_for = _index_steps(ctx, params, record, len(images), job.timeout_seconds)
        steps.extend(index_steps)
        index_built = bool(index_steps)
        if index_built:
            catalog = IndexCatalog(ctx.runs.redis, ctx.runs.keys)
            claims.append(catalog.claim_key(ctx.tenant, IndexAccess(ctx, record, params.dataset).id(params.layer)))
    after_index = (len(steps) - 1,) if steps else ()
    for name, chunk_units in chunks.items():
        if name not in stored:
            body = {"atlas": params.model_dump(mode="json"), "units": chunk_units, "cache": cache, "chunk": name}
            steps.append(Step("atlas_chunk", body, after=after_index, waits_for=waits_for))
    assemble = Step("atlas_assemble", {
        "atlas": params.model_dump(mode="json"), "units": units, "cache": cache, "chunks": list(chunks),
        "reused": len(stored), "index_built": index_built,
    })  # fmt: skip
    ctx.runs.fanout.hand_over(job, ctx.worker, steps, assemble, claims=claims)
    return JobOutput(handed_over=True)


def _index_steps(
    ctx: JobContext, params: AtlasParams, record: dict, images: int, timeout: int
) -> tuple[list[Step], tuple[str, ...]]:
    """The index's shards and merge when this job builds the layer's index; none when it is
    built (or another job builds it: the chunks then wait for that job's merge)."""
    access = IndexAccess(ctx, record, params.dataset)
    index = access.id(params.layer)
    catalog = IndexCatalog(ctx.runs.redis, ctx.runs.keys)
    found = catalog.get(ctx.tenant, index)
    k = index_k(params)
    if found is not None and found["k"] >= k:
        return [], ()
    holder = catalog.claim_build(ctx.tenant, index, ctx.job_id, timeout)
    if holder != ctx.job_id:
        other = ctx.runs.store.record(holder)
        merge = (other.fanout or {}).get("merge") if other is not None else None
        return [], (merge,) if merge else ()
    shards = [
        Step("activation_index_shard", {"dataset": params.dataset, "layers": [params.layer], "k": k, "start": start,
                                         "stop": min(start + params.shard_images, images), "batch_size": params.batch_size})
        for start in range(0, images, params.shard_images)
    ]  # fmt: skip
    merge = Step(
        "activation_index_merge",
        {
            "dataset": params.dataset,
            "layers": [params.layer],
            "k": k,
            "indexes": {params.layer: index},
            "finish": False,
        },
        after=tuple(range(len(shards))),
    )
    return [*shards, merge], ()
