"""The `activation_index` job: plan the scan and hand it over to shards on every worker.

What is already indexed (same model content, dataset content, layer and input contract, with
at least `k` kept) is not scanned again; a layer another job is building is waited for (this
job's merge runs after that job's, on RQ); the rest is split into shards of `shard_images`.
The merge (merge.py) writes the indexes and finishes this job.
"""

from __future__ import annotations

import json

from service.indexes import IndexCatalog, dataset_identity, index_id, model_identity
from service.jobstore.fanout import Step
from service.kinds.activation_index import ActivationIndexParams, check_activation_index
from worker.artifacts import json_artifact
from worker.context import JobContext, JobFailed, JobOutput


def run(ctx: JobContext, params: ActivationIndexParams) -> JobOutput:
    ctx.progress(0.0, "loading the model and the dataset's index", force=True)
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    check_activation_index(params, loaded.record)  # with the layers as loaded
    images = ctx.datasets.images(ctx.tenant, params.dataset)
    if len(images) == 0:
        raise JobFailed("invalid-params", "The dataset has no images", params.dataset)
    _, dataset_record = ctx.datasets.catalog.find(ctx.tenant, params.dataset)
    model_id, data_id = model_identity(loaded.record, ctx.model), dataset_identity(dataset_record)
    ids = {layer: index_id(model_id, data_id, layer, loaded.record["input"]) for layer in params.layers}
    catalog = IndexCatalog(ctx.runs.redis, ctx.runs.keys)
    ready = {layer: catalog.get(ctx.tenant, i) for layer, i in ids.items()}
    missing = [layer for layer in params.layers if params.rebuild or not ready[layer] or ready[layer]["k"] < params.k]
    if not missing:
        return _already_indexed(ctx, params, ready)
    record = ctx.runs.store.record(ctx.job_id)
    holders = {
        layer: catalog.claim_build(ctx.tenant, ids[layer], ctx.job_id, record.timeout_seconds) for layer in missing
    }
    mine = [layer for layer in missing if holders[layer] == ctx.job_id]
    others = sorted({holder for holder in holders.values() if holder != ctx.job_id})
    shards = [
        Step("activation_index_shard", {"dataset": params.dataset, "layers": mine, "k": params.k, "start": start,
                                         "stop": min(start + params.shard_images, len(images)), "batch_size": params.batch_size})
        for start in range(0, len(images), params.shard_images)
    ] if mine else []  # fmt: skip
    waited = [merge for merge in (_merge_of(ctx, holder) for holder in others) if merge]
    merge = Step("activation_index_merge", {"dataset": params.dataset, "layers": missing, "k": params.k,
                                            "indexes": {layer: ids[layer] for layer in missing},
                                            "waited_for": others[0] if others else None})  # fmt: skip
    claims = [catalog.claim_key(ctx.tenant, ids[layer]) for layer in mine]
    ctx.runs.fanout.hand_over(record, ctx.worker, shards, merge, merge_also_after=waited, claims=claims)
    return JobOutput(handed_over=True)


def _merge_of(ctx: JobContext, job_id: str) -> str | None:
    """The merge step of another build (what this job's merge then waits for on RQ)."""
    other = ctx.runs.store.record(job_id)
    return (other.fanout or {}).get("merge") if other is not None else None


def _already_indexed(ctx: JobContext, params: ActivationIndexParams, ready: dict) -> JobOutput:
    result = {
        "model": ctx.model,
        "dataset": params.dataset,
        "indexes": [{**ready[layer], "reused": True} for layer in params.layers],
        "note": "every layer was already indexed for this model and dataset: nothing was scanned (rebuild: true scans again)",
        "params": params.model_dump(mode="json"),
    }
    summary = {"indexes": [ready[layer]["id"] for layer in params.layers], "reused": True}
    return JobOutput(summary=summary, artifacts=[json_artifact("result.json", json.loads(json.dumps(result)))])
