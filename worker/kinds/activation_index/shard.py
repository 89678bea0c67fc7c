"""One shard of an activation index build: images start..stop, read ahead on threads, one
forward pass per batch to the deepest layer, the statistics of every layer kept as the step's
artifacts (one .npz per layer, read by the merge)."""

from __future__ import annotations

import time

from service.kinds.activation_index import IndexShardParams
from worker.artifacts import ArtifactBlob
from worker.context import JobContext, JobOutput
from worker.core.index import scan
from worker.kinds.activation_index.files import stats_bytes
from worker.scan_reader import prepared_batches


def run(ctx: JobContext, params: IndexShardParams) -> JobOutput:
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    images = ctx.datasets.images(ctx.tenant, params.dataset)
    total = max(1, params.stop - params.start)
    done = 0
    started = time.perf_counter()

    def counted(batches):
        nonlocal done
        for batch in batches:
            yield batch
            done += len(batch[1])
            ctx.progress(done / total, f"{done} of {total} images")

    batches = prepared_batches(images, params.start, params.stop, params.batch_size, loaded.record["input"])
    stats = scan(loaded.module, counted(batches), params.layers, ctx.device, check=ctx.check, k=params.k)
    seconds = time.perf_counter() - started
    artifacts = [
        ArtifactBlob(layer_file(position), "application/octet-stream", stats_bytes(stats[layer]))
        for position, layer in enumerate(params.layers)
    ]
    summary = {"images": total, "seconds": round(seconds, 3), "images_per_second": round(total / max(seconds, 1e-9), 1)}
    return JobOutput(summary=summary, artifacts=artifacts)


def layer_file(position: int) -> str:
    return f"layer-{position}.npz"
