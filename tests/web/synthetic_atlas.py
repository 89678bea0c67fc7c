"""Finished atlas jobs for the atlas page's tests, written straight into a stack's job store and
blob store, as the atlas's assembly step writes them (worker/kinds/atlas/assemble.py): any
number of units in seconds, with numbers chosen so that every sort gives another order, some
units dead, labels to filter by. The pictures are flat colours, one per unit.
"""

from __future__ import annotations

import io
import json
import math
import random
import threading
from collections import Counter
from contextlib import contextmanager

import redis
from PIL import Image

from service.blob_leases import BlobLeases
from service.jobspec import JobStatus
from service.jobstore import ArtifactBlob, ArtifactFiles, JobRuns, JobStore
from tests.conftest import Stack

LABELS = ["circle", "square", "triangle", "star"]
TILE, GAP = 64, 2
WRITER = "test-atlas-writer"  # the worker these jobs are run by, as the job store sees it


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _colour(unit: int) -> tuple[int, int, int]:
    return ((unit * 53) % 256, (unit * 97 + 40) % 256, (unit * 151 + 80) % 256)


def is_dead(unit: int) -> bool:
    return unit % 7 == 3


def unit_entry(unit: int, top_k: int, rng: random.Random) -> dict:
    dead = is_dead(unit)
    maximum = 0.0 if dead else round(rng.uniform(0.5, 10.0), 5)
    top = []
    for rank in range(top_k):
        image = rng.randrange(10_000)
        y, x = rng.randrange(16), rng.randrange(16)
        top.append({
            "image_index": image, "image_name": f"img-{image:05d}.png", "label": LABELS[image % len(LABELS)],
            "position": [y, x], "activation": round(maximum * (1 - rank / (2 * top_k)), 5),
            "receptive_field": [max(0, 2 * y - 3), max(0, 2 * x - 3), 2 * y + 4, 2 * x + 4],
        })  # fmt: skip
    counted = Counter(e["label"] for e in top)
    selective = None if unit % 5 == 0 else round(rng.random(), 5)
    fv_activation = 0.0 if dead else round(maximum * rng.uniform(0.5, 3.0), 5)
    return {
        "unit": unit, "dead": dead, "max_activation": maximum,
        "mean_activation": 0.0 if dead else round(maximum * rng.uniform(0.02, 0.5), 5),
        "std_activation": round(rng.uniform(0.0, 2.0), 5), "fraction_positive": 0.0 if dead else round(rng.random(), 5),
        "top": top, "bottom": None,
        "feature_visualization": {
            "activation": fv_activation, "ratio_to_dataset_max": None if dead else round(fv_activation / maximum, 5),
            "is_top_unit": unit % 3 == 0, "dead": dead, "image": f"units/{unit}/fv.png",
        },
        "labels": {
            "top_classes": [{"label": label, "count": count} for label, count in counted.most_common()],
            "class_selectivity": selective, "best_class": LABELS[(unit * 7) % len(LABELS)],
            "best_class_mean": round(maximum / 3, 5),
        },
        "images": {"exemplars": f"units/{unit}/exemplars.png", "best": f"units/{unit}/best.png", "fv": f"units/{unit}/fv.png"},
    }  # fmt: skip


def strongest_first(units: list[dict], key) -> list[int]:
    """Unit numbers by `key`, largest first, units without a value last (atlas.json's `orders`)."""
    return [e["unit"] for e in sorted(units, key=lambda e: (key(e) is None, -(key(e) or 0.0), e["unit"]))]


def atlas_document(units: int, *, top_k: int = 3, layer: str = "features.6", shape=(32, 32, 32), seed: int = 0) -> dict:
    rng = random.Random(seed)
    entries = [unit_entry(unit, top_k, rng) for unit in range(units)]
    columns = max(1, min(32, math.ceil(math.sqrt(units))))
    return {
        "model": "shapes-cnn", "dataset": "shapes-val",
        "layer": {"name": layer, "type": "ReLU", "output_shape": list(shape)},
        "method": "deconvnet", "top_k": top_k, "bottom_k": 0, "units": entries,
        "orders": {
            "max_activation": strongest_first(entries, lambda e: e["max_activation"]),
            "mean_activation": strongest_first(entries, lambda e: e["mean_activation"]),
            "class_selectivity": strongest_first(entries, lambda e: e["labels"]["class_selectivity"]),
            "feature_visualization": strongest_first(entries, lambda e: e["feature_visualization"]["ratio_to_dataset_max"]),
            "dead": [e["unit"] for e in entries if e["dead"]],
        },
        "sheets": {"fv": {"file": "sheet-feature-visualizations.png", "tile": TILE, "gap": GAP, "columns": columns,
                          "order": [e["unit"] for e in entries]}},
    }  # fmt: skip


def artifacts(document: dict) -> list[ArtifactBlob]:
    """atlas.json, result.json, the sheet and each unit's three pictures."""
    units = document["units"]
    top_k = document["top_k"]
    result = {"model": document["model"], "dataset": document["dataset"], "layer": document["layer"]["name"],
              "units": len(units), "dead_units": document["orders"]["dead"], "chunks": 1, "chunks_reused": 0,
              "note": "every chunk rendered by this job"}  # fmt: skip
    blobs = [
        ArtifactBlob("result.json", "application/json", json.dumps(result).encode()),
        ArtifactBlob("atlas.json", "application/json", json.dumps(document).encode()),
        ArtifactBlob("sheet-feature-visualizations.png", "image/png", _png(TILE, TILE, (200, 200, 200))),
    ]
    strip = (top_k * (TILE + GAP) - GAP, 2 * TILE + GAP)
    for entry in units:
        colour = _colour(entry["unit"])
        blobs += [
            ArtifactBlob(entry["images"]["fv"], "image/png", _png(32, 32, colour)),
            ArtifactBlob(entry["images"]["best"], "image/png", _png(TILE, TILE, colour)),
            ArtifactBlob(entry["images"]["exemplars"], "image/png", _png(*strip, colour)),
        ]
    return blobs


class AtlasJobs:
    """Atlas jobs of tenant alice in a stack's store, run by a worker that is only this object."""

    def __init__(self, stack: Stack):
        self.connection = redis.Redis.from_url(stack.settings.redis_url)
        self.store = JobStore(self.connection, stack.settings)
        self.runs = JobRuns(self.store)
        self.files = ArtifactFiles(stack.blob_store(), BlobLeases(self.connection, self.store.keys))

    def started(self, document: dict, *, kind: str = "atlas") -> str:
        params = {"layer": document["layer"]["name"], "dataset": document["dataset"], "top_k": document["top_k"],
                  "chunk_units": 32, "feature_visualization": {"steps": 16, "size": 32, "lr": 0.1}}  # fmt: skip
        job_id = self.store.create(
            "alice", kind=kind, model=document["model"], params=params, metadata={}, timeout_seconds=3600
        ).job_id
        self.runs.heartbeat(WRITER)
        assert self.runs.start(job_id, WRITER) is not None
        return job_id

    def finish(self, job_id: str, document: dict) -> None:
        prefix, refs = self.files.write(job_id, artifacts(document))
        summary = {"units": len(document["units"]), "dead": len(document["orders"]["dead"])}
        self.runs.heartbeat(WRITER)
        assert (
            self.runs.finish(
                job_id, WRITER, JobStatus.succeeded, summary=summary, artifacts=refs, artifacts_prefix=prefix
            )
            == "finished"
        )

    def finished(self, document: dict, *, kind: str = "atlas") -> str:
        job_id = self.started(document, kind=kind)
        self.finish(job_id, document)
        return job_id

    @contextmanager
    def alive(self, interval: float = 0.3):
        """Heartbeats for this writer while a job of it stays running (the reaper would requeue it)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                self.runs.heartbeat(WRITER)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self) -> None:
        self.connection.close()
