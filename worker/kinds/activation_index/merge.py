"""The merge of an activation index build: every shard's statistics merged per layer (exact:
worker/core/index/stats.py), written as the layer's index, and the build job finished with its
result (or, as a stage of an atlas, left to the steps after it). An index is complete or absent: nothing is published before every shard is merged."""

from __future__ import annotations

import json
import time

from service.indexes import IndexCatalog
from service.jobspec import JobStatus
from service.jobstore.fanout import FANOUT_OWNER
from service.kinds.activation_index import IndexMergeParams
from worker.artifacts import json_artifact
from worker.context import JobContext, JobFailed, JobOutput
from worker.core.index import merge, summary
from worker.indexes import IndexAccess
from worker.kinds.activation_index.files import stats_from_bytes
from worker.kinds.activation_index.shard import layer_file

# The result lists this many top images per channel (the index keeps `k`).
RESULT_TOP = 9


def run(ctx: JobContext, params: IndexMergeParams) -> JobOutput:
    step = ctx.runs.store.record(ctx.job_id)
    parent = ctx.runs.store.record(step.parent)
    if parent is None or parent.status != JobStatus.running:
        return JobOutput(summary={"skipped": "the build job already ended"})
    catalog, files = IndexCatalog(ctx.runs.redis, ctx.runs.keys), ctx.files.store
    access = IndexAccess(ctx, ctx.models.load(ctx.tenant, ctx.model)[0].record, params.dataset)
    # The shards this merge waited for (an atlas's fan-out has other steps besides).
    shards = [ctx.runs.store.record(step_id) for step_id in step.after]
    shards = [shard for shard in shards if shard is not None and shard.kind == "activation_index_shard"]
    built, started = [], time.perf_counter()
    try:
        for layer in params.layers:
            index = params.indexes[layer]
            position = _position_in(shards, layer)
            if position is None:  # another job built it: this merge ran after that one's
                record = catalog.get(ctx.tenant, index)
                if record is None:
                    raise JobFailed("job-error", "The index this job waited for was not built",
                                    f"layer {layer!r}: job {params.waited_for} ended without it; submit again")  # fmt: skip
                built.append({**record, "reused": True})
                continue
            stats = None
            for shard in shards:
                part = stats_from_bytes(files.get_bytes(f"{shard.artifacts_prefix}/{layer_file(position)}"))
                stats = part if stats is None else merge(stats, part)
                ctx.check()
            built.append(_publish(access, parent, layer, stats, time.perf_counter() - started))
    finally:
        for index in params.indexes.values():
            catalog.release_build(ctx.tenant, index, parent.id)
    if not params.finish:  # a stage of a bigger job (an atlas): the indexes are its input
        return JobOutput(summary={"merged": len(shards), "indexes": [b["id"] for b in built]})
    result = {
        "model": parent.model, "dataset": params.dataset, "indexes": built,
        "shards": len(shards), "params": parent.params,
    }  # fmt: skip
    prefix, refs = ctx.files.write(parent.id, [json_artifact("result.json", json.loads(json.dumps(result)))])
    ctx.runs.finish(parent.id, FANOUT_OWNER, JobStatus.succeeded, summary={"indexes": [b["id"] for b in built]},
                    artifacts=refs, artifacts_prefix=prefix)  # fmt: skip
    return JobOutput(summary={"merged": len(shards), "indexes": [b["id"] for b in built]})


def _position_in(shards, layer: str) -> int | None:
    layers = shards[0].params["layers"] if shards else []
    return layers.index(layer) if layer in layers else None


def _publish(access: IndexAccess, parent, layer: str, stats, seconds: float) -> dict:
    record = access.publish(layer, stats, seconds, job=parent.id)
    layer_summary = summary(stats, top=RESULT_TOP)
    dead = [c["channel"] for c in layer_summary["channels"] if (c["max"] or 0.0) <= 0.0]
    return {**record, "reused": False, "dead_channels": dead, "summary": layer_summary}
