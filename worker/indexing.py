"""The `dataset_indexing` job: index a registered dataset where it lies, then publish it.

The index is written under the record's own prefix, held by a lease while it is written: a
dataset deleted meanwhile loses the race cleanly (the update finds no record owning the prefix,
and the index is discarded), and a worker that dies leaves an index the sweeper deletes.
"""

from __future__ import annotations

import json
from typing import Any

from service.datasets.sources import Source, SourceRefused, index_source
from service.datasets.uploads import put_index
from service.kinds.dataset_indexing import DatasetIndexingParams
from service.uploaded_files import WRITE_GRACE_SECONDS
from service.uploads import UploadRejected
from worker.artifacts import json_artifact
from worker.context import JobCanceled, JobContext, JobFailed, JobOutput, JobTimedOut, WorkerShuttingDown


def run_dataset_indexing(ctx: JobContext, params: DatasetIndexingParams) -> JobOutput:
    loader = ctx.datasets
    files = loader.files
    raw = files.redis.hget(files.keys.catalog("datasets", ctx.tenant), params.dataset)
    if raw is None:
        raise JobFailed("invalid-params", "No such dataset", f"{params.dataset!r} (deleted?)")
    record = json.loads(raw)
    location = record.get("location") or {}
    if record.get("source") != "registered" or not location:
        raise JobFailed("invalid-params", "Not a registered dataset", f"{params.dataset!r} was uploaded")
    source = Source(location["scheme"], location["location"], record.get("uri") or "")
    ctx.progress(0.0, f"listing {source.uri}", force=True)

    def progress(done: int, total: int) -> None:
        ctx.progress(0.05 + 0.9 * done / max(total, 1), f"checked {done} of {total} images")

    try:
        index = index_source(source, files.store, loader.roots, progress)
    except (UploadRejected, SourceRefused) as exc:
        _fail(ctx, record, str(exc))
        raise JobFailed("invalid-dataset", "The dataset cannot be indexed", str(exc)) from exc
    except WorkerShuttingDown:
        raise  # the job goes back to the queue; the dataset stays pending for the next try
    except (JobCanceled, JobTimedOut) as exc:
        _fail(ctx, record, "indexing was canceled" if isinstance(exc, JobCanceled) else "indexing ran past its time limit")
        raise
    except Exception as exc:  # unreadable storage and the like: say so on the dataset too
        _fail(ctx, record, f"{type(exc).__name__} while indexing: {exc}")
        raise
    ctx.progress(0.96, "writing the index", force=True)
    prefix = record["prefix"]
    files.leases.hold(prefix, WRITE_GRACE_SECONDS)
    ready = {**record, **index.summary(), "status": "ready", "error": None, "indexing_job": ctx.job_id}
    ready["index"] = put_index(files, prefix, index)
    if not files.update("datasets", ctx.tenant, params.dataset, ready, keep=True, only_if_status="pending"):
        files.discard(prefix)
        raise JobFailed("invalid-params", "The dataset was deleted while it was being indexed", params.dataset)
    summary = {"dataset": params.dataset, **{k: ready[k] for k in ("count", "format", "image_size", "skipped_count")}}
    summary["classes"] = len(index.classes or [])
    document = {**summary, "labels": index.classes, "label_counts": ready["label_counts"]}
    return JobOutput(summary=summary, artifacts=[json_artifact("result.json", document)])


def _fail(ctx: JobContext, record: dict[str, Any], reason: str) -> None:
    failed = {**record, "status": "failed", "error": reason[:2000], "indexing_job": ctx.job_id}
    ctx.datasets.files.update("datasets", ctx.tenant, record["id"], failed, only_if_status="pending")
