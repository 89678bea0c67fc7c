"""The assembly of an atlas: every chunk's units read back from the atlas's chunk folder, the
overview sheets drawn, and the job finished with atlas.json, result.json and each unit's
pictures as its artifacts (`units/<n>/exemplars.png`, `fv.png`, `best.png`)."""

from __future__ import annotations

import json
import time

from service.indexes import IndexCatalog
from service.jobspec import JobStatus
from service.jobstore.fanout import FANOUT_OWNER
from service.kinds.atlas import AtlasAssembleParams
from worker.artifacts import json_artifact, png_artifact
from worker.context import JobContext, JobOutput
from worker.indexes import IndexAccess
from worker.kinds.atlas.files import read_chunk, unit_file
from worker.kinds.atlas.pictures import TILE, sheet_columns, sprite_sheet, tile_from_png
from worker.models.loader import inspected_record

SHEETS = {"fv": "sheet-feature-visualizations.png", "best": "sheet-exemplars.png"}


def run(ctx: JobContext, params: AtlasAssembleParams) -> JobOutput:
    step = ctx.runs.store.record(ctx.job_id)
    parent = ctx.runs.store.record(step.parent)
    if parent is None or parent.status != JobStatus.running:
        return JobOutput(summary={"skipped": "the atlas job already ended"})
    started, store, atlas = time.perf_counter(), ctx.files.store, params.atlas
    units, pictures = [], []
    for chunk in params.chunks:
        for entry in read_chunk(store, params.cache, chunk):
            units.append(entry)
            for name in ("exemplars.png", "best.png", "fv.png"):
                if (
                    name == "fv.png"
                    and entry["feature_visualization"] is None
                    or name == "best.png"
                    and not entry["top"]
                ):
                    continue
                data = store.get_bytes(unit_file(params.cache, chunk, entry["unit"], name))
                pictures.append(png_artifact(f"units/{entry['unit']}/{name}", data))
        ctx.check()
    by_name = {artifact.name: artifact.data for artifact in pictures}
    columns = sheet_columns(len(units))
    sheets = {}
    for kind, file in SHEETS.items():
        tiles = [
            tile_from_png(by_name[entry["images"][kind]]) if entry["images"].get(kind) else None for entry in units
        ]
        if any(t is not None for t in tiles):
            sheets[kind] = png_artifact(file, sprite_sheet(tiles, columns))

    model_record = inspected_record(ctx.models, ctx.tenant, ctx.model)
    layer = next(entry for entry in model_record["layers"] if entry["name"] == atlas.layer)
    index = IndexCatalog(ctx.runs.redis, ctx.runs.keys).get(
        ctx.tenant, IndexAccess(ctx, model_record, atlas.dataset).id(atlas.layer)
    )
    document = {
        "model": parent.model, "dataset": atlas.dataset,
        "layer": {"name": layer["name"], "type": layer.get("type"), "output_shape": layer["output_shape"]},
        "method": atlas.method, "top_k": atlas.top_k, "bottom_k": atlas.bottom_k,
        "units": units,
        "orders": _orders(units),
        "sheets": {kind: {"file": SHEETS[kind], "tile": TILE, "gap": 2, "columns": columns,
                          "order": [e["unit"] for e in units]} for kind in sheets},
    }  # fmt: skip
    served = params.reused == len(params.chunks)
    result = {
        "model": parent.model, "dataset": atlas.dataset, "layer": atlas.layer, "units": len(units),
        "dead_units": [e["unit"] for e in units if e["dead"]],
        "chunks": len(params.chunks), "chunks_reused": params.reused, "served_from_stored_chunks": served,
        "index": {"id": index["id"], "k": index["k"], "images": index["images"], "built_now": params.index_built} if index else None,
        "note": ("an identical atlas was already rendered: served from its stored chunks, nothing was rendered again"
                 if served else f"{params.reused} of {len(params.chunks)} chunks were already rendered by an earlier run and reused"
                 if params.reused else "every chunk rendered by this job"),
        "artifacts": {"atlas": "atlas.json", "sheets": [s.name for s in sheets.values()], "per_unit": "units/<n>/{exemplars,fv,best}.png"},
        "params": parent.params,
    }  # fmt: skip
    artifacts = [json_artifact("result.json", result), json_artifact("atlas.json", json.loads(json.dumps(document))),
                 *sheets.values(), *pictures]  # fmt: skip
    prefix, refs = ctx.files.write(parent.id, artifacts)
    summary = {"units": len(units), "dead": len(result["dead_units"]), "chunks_reused": params.reused,
               "served_from_stored_chunks": served, "index_built": params.index_built}  # fmt: skip
    ctx.runs.finish(
        parent.id, FANOUT_OWNER, JobStatus.succeeded, summary=summary, artifacts=refs, artifacts_prefix=prefix
    )
    return JobOutput(summary={"units": len(units), "seconds": round(time.perf_counter() - started, 3)})


def _orders(units: list[dict]) -> dict[str, list[int]]:
    """Unit numbers sorted by what the web page sorts by (the strongest first)."""

    def by(key):
        return [e["unit"] for e in sorted(units, key=lambda e: (key(e) is None, -(key(e) or 0.0), e["unit"]))]

    return {
        "max_activation": by(lambda e: e["max_activation"]),
        "mean_activation": by(lambda e: e["mean_activation"]),
        "class_selectivity": by(lambda e: (e["labels"] or {}).get("class_selectivity")),
        "feature_visualization": by(lambda e: (e["feature_visualization"] or {}).get("ratio_to_dataset_max")),
        "dead": [e["unit"] for e in units if e["dead"]],
    }
