"""One chunk of an atlas: its units' exemplars, projected exactly as a deconvnet job projects
them (the same function, worker/kinds/deconvnet/compute.py, reading the same index), their
numbers from the index, and their feature visualizations rendered in one batched optimization
(worker/kinds/activation_maximization/compute.py). Kept in the atlas's chunk folder
(worker/kinds/atlas/files.py), so that a resumed or repeated atlas does not render it again."""

from __future__ import annotations

import time

import numpy as np

from service.kinds.atlas import AtlasChunkParams, index_k, rendering_params
from service.kinds.deconvnet import DeconvnetParams
from worker.context import JobContext, JobFailed, JobOutput
from worker.core.deconvnet import receptive_fields
from worker.core.imaging import denormalize, png_bytes, prepare_images
from worker.kinds.activation_maximization.compute import Hooks, render_images
from worker.kinds.atlas.files import CHUNK_FILE, write_chunk
from worker.kinds.atlas.numbers import unit_entry
from worker.kinds.atlas.pictures import exemplar_strip, hwc, tile
from worker.kinds.deconvnet.compute import project_neurons
from worker.kinds.deconvnet.figures import crop_to_field, display_projection


def run(ctx: JobContext, params: AtlasChunkParams) -> JobOutput:
    store, atlas = ctx.files.store, params.atlas
    if store.head(f"{params.cache}/{params.chunk}/{CHUNK_FILE}") is not None:
        return JobOutput(summary={"stored": True, "units": len(params.units)})
    started = time.perf_counter()
    loaded, _, _ = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    deconv = DeconvnetParams(layer=atlas.layer, channels=params.units, dataset=atlas.dataset, top_k=atlas.top_k,
                             method=atlas.method, batch_size=min(atlas.batch_size, 1024))  # fmt: skip
    projections = project_neurons(ctx, deconv)
    found = projections.layer_index  # the index the projections read (or built): not read again
    if found is None or found.record["k"] < index_k(atlas):
        raise JobFailed(
            "job-error", "The layer's activation index is gone", "it was deleted during the atlas; submit again"
        )
    layer_summary = found.stats.summary(top=max(atlas.top_k, atlas.bottom_k))
    images = ctx.datasets.images(ctx.tenant, atlas.dataset)
    bottoms = _bottom_patches(model, record, images, atlas, layer_summary, params.units, ctx.device)
    ctx.progress(0.6, f"rendering {len(params.units)} feature visualizations")
    rendered = _feature_visualizations(ctx, model, record, params)

    pictures: dict[tuple[int, str], bytes] = {}
    entries = []
    for position, unit in enumerate(params.units):
        mine = [n for n in projections.neurons if n.channel == unit]
        shown = [display_projection(projections.reconstructions[n.index], n) for n in mine]
        patches = [crop_to_field(projections.originals[projections.original_row[n.image_index]], n, True) for n in mine]
        pictures[(unit, "exemplars.png")] = exemplar_strip(shown, patches, bottoms.get(unit, []))
        if patches:
            pictures[(unit, "best.png")] = png_bytes(tile(hwc(patches[0])))
        fv = None
        if rendered is not None:
            pictures[(unit, "fv.png")] = png_bytes(hwc(rendered["images"][position]))
            fv = {key: rendered[key][position] for key in ("activation", "is_top_unit", "dead")}
        entries.append(
            unit_entry(
                unit,
                layer_summary["channels"][unit],
                mine,
                images,
                atlas,
                fv,
                bottoms_info=bottoms.get((unit, "info"), []),
            )
        )
    write_chunk(store, params.cache, params.chunk, pictures, entries)
    return JobOutput(summary={"units": len(params.units), "seconds": round(time.perf_counter() - started, 3)})


def _feature_visualizations(ctx: JobContext, model, record: dict, params: AtlasChunkParams) -> dict | None:
    """Every unit of the chunk rendered in one optimization; None when the atlas skips them."""
    if params.atlas.feature_visualization is None:
        return None
    fv_params = rendering_params(params.atlas, params.units)

    def on_step(step: int, steps: int, values) -> None:
        ctx.check()
        if values is not None:
            ctx.progress(0.6 + 0.35 * step / steps, f"feature visualizations: step {step} of {steps}")

    try:
        rendering = render_images(
            model, record, fv_params, device=ctx.device, hooks=Hooks(on_step=on_step, check=ctx.check)
        )
    except JobFailed as failure:
        if failure.type != "dead-objective":
            raise
        n = len(params.units)  # every unit's gradient is zero on noise: nothing to render
        return {"images": np.full((n, 3, fv_params.size, fv_params.size), 0.5, np.float32),
                "activation": [0.0] * n, "is_top_unit": [False] * n, "dead": [True] * n}  # fmt: skip
    return {
        "images": rendering.images,
        "activation": [float(v) for v in rendering.measured["activation"]],
        "is_top_unit": [bool(v) for v in rendering.measured["is_top_unit"]],
        "dead": [bool(v) for v in rendering.result.dead],
    }


def _bottom_patches(model, record: dict, images, atlas, layer_summary: dict, units: list[int], device: str) -> dict:
    """unit -> the patches of its bottom exemplars (and (unit, "info") -> their entries with
    receptive fields), for layers whose index keeps the bottom."""
    if not atlas.bottom_k or layer_summary.get("bottom_k", 0) == 0:
        return {}
    chosen = {unit: (layer_summary["channels"][unit]["bottom"] or [])[: atlas.bottom_k] for unit in units}
    wanted = sorted({e["image_index"] for entries in chosen.values() for e in entries})
    if not wanted:
        return {}
    prepared = prepare_images(images.read(wanted), record["input"], device)
    row = {image: position for position, image in enumerate(wanted)}
    positions = sorted({tuple(e["position"]) for entries in chosen.values() for e in entries})
    boxes = receptive_fields(model, prepared[:1], atlas.layer, positions)
    originals = denormalize(prepared, record["input"]["image"]).clamp(0, 1).cpu().numpy()
    out: dict = {}
    for unit, entries in chosen.items():
        out[unit] = []
        out[(unit, "info")] = []
        for entry in entries:
            y0, x0, y1, x1 = boxes[tuple(entry["position"])]
            out[unit].append(originals[row[entry["image_index"]]][:, y0:y1, x0:x1])
            out[(unit, "info")].append({**entry, "receptive_field": [y0, x0, y1, x1]})
    return out
