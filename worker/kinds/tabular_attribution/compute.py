"""The PyTorch half of a tabular attribution job: the attributions of the chosen rows and, when
the job makes its dataset views (`dataset_views`), the rows that activate the target most and the
input that maximizes it (worker.core.attribution)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from service.kinds.tabular_cells import tabular_features
from service.kinds.tabular_checks import check_tabular_attribution
from service.kinds.tabular_cost import (
    estimated_evaluations,
    evaluation_limit_message,
    resolved_n_samples,
    resolved_n_steps,
)
from service.kinds.tabular_params import (
    BASELINE_FREE_METHODS,
    DEFAULT_N_STEPS,
    INTERACTION_METHODS,
    MAX_EXACT_SHAPLEY_VARIABLES,
    MAX_MODEL_EVALUATIONS,
    OutputTarget,
    TabularAttributionParams,
    made,
)
from worker.context import JobContext, JobFailed
from worker.core.attribution import Explanation, explain, target_forward
from worker.core.attribution.extremes import STARTS, maximize, top_rows
from worker.kinds.tabular_attribution.interactions import Interactions, interact
from worker.kinds.tabular_attribution.rows import RowSelection, resolve_baseline, select_rows, user_values
from worker.models.tabular import encode_rows, variable_groups


@dataclass
class AttributionResult:
    """Everything the report and the charts read: no tensor, no model."""

    features: list[dict[str, Any]]  # the model's feature manifest
    variables: list[str]  # their names, in manifest order (the columns of `explanation`)
    groups: list[list[int]]  # per variable, its encoded columns
    output_meaning: str | None  # the model's words for its output (record `output`)
    selection: RowSelection
    target: dict[str, Any]  # {"type": "output", "index", "label"?} or {"type": "neuron", "layer", "unit"}
    baseline: dict[str, Any]  # result.json's `baseline`
    baseline_rows: int  # 1, or the background sample's size
    n_samples: int | None  # the method's sample count as run (None: the method takes none)
    n_steps: int | None  # the method's steps along its path as run (None: the method has no path)
    evaluations: int  # the cost model's count of the method's model evaluations
    explanation: Explanation  # interaction methods: per variable, main effect plus half of its pairs
    interactions: Interactions | None  # the interaction methods' main effects and pairs
    importance: np.ndarray  # [V] mean |attribution| over the rows
    views: bool  # whether the dataset views below were computed (`dataset_views`)
    top_rows: list[dict[str, Any]] | None  # reference rows that activate the target most
    maximizing_input: dict[str, Any] | None
    warnings: list[str]  # from reading the rows and the baseline
    model_load_seconds: float
    cache_hit: bool
    attribution_seconds: float
    device: torch.device


def attribute(ctx: JobContext, params: TabularAttributionParams) -> AttributionResult:
    """Load the model, read the rows and the baseline (stage `load`), and run the method; then,
    when the job makes its dataset views, the rows that activate the target most and the input
    that maximizes it (they share the target's forward)."""
    ctx.progress(0.01, "loading the model", force=True)
    loaded, cache_hit, load_seconds = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    check_tabular_attribution(params, record)  # the submit-time check, now with the record as loaded
    features = tabular_features(record)
    variables = [f["name"] for f in features]
    groups = list(variable_groups(features).values())
    device = torch.device(ctx.device)

    ctx.progress(0.03, "reading rows")
    with ctx.stage("load"):
        selection = select_rows(ctx, params, features)
        rows = selection.rows
        x = torch.from_numpy(encode_rows(rows, features)).to(device)

    target = _target(params, record)
    forward = target_forward(model, target)
    try:
        forward(x[:1])
    except (KeyError, IndexError) as exc:
        layers = ", ".join(layer["name"] for layer in record.get("layers") or [])
        raise JobFailed(
            "invalid-params",
            "Invalid target",
            f"{exc.args[0] if exc.args else exc}" + (f"; layers: {layers}" if layers else ""),
        ) from None

    with ctx.stage("load"):
        baseline = resolve_baseline(ctx, params, features, selection)
    if params.method in BASELINE_FREE_METHODS:
        baseline.info["used_by_method"] = False
        baseline.info["note"] = (
            f"{params.method} reads the gradient at the input and uses no baseline; baseline_output is the "
            "baseline's output, for reference only"
        )
    baselines = baseline.rows.to(device)
    evaluations = estimated_evaluations(
        params.method, len(rows), baselines.shape[0], len(variables), params.n_steps, params.n_samples
    )
    if evaluations > MAX_MODEL_EVALUATIONS:
        raise JobFailed(
            "limit-exceeded", "The job is too large",
            evaluation_limit_message(params.method, evaluations, len(rows), baselines.shape[0]),
        )  # fmt: skip

    n_samples = resolved_n_samples(params.method, params.n_samples, len(variables))
    n_steps = resolved_n_steps(params.method, params.n_steps)
    # Not forced: a job of a few rows ends before the next write is due (the first was made at
    # "loading the model"), and a long one reports its rows as the method goes.
    ctx.progress(0.08, f"{params.method} on {len(rows)} rows")
    attributed = time.perf_counter()

    def progress(fraction: float) -> None:
        ctx.progress(0.08 + 0.72 * fraction, f"{params.method}: {fraction:.0%} of the rows")

    interactions = None
    if params.method in INTERACTION_METHODS:
        interactions = interact(forward, params, x, baselines, groups, progress)
        explanation = interactions.explanation
    else:
        explanation = explain(
            forward, params.method, x, baselines, groups,
            n_steps=n_steps or DEFAULT_N_STEPS, n_samples=n_samples, seed=params.seed,
            max_variables=MAX_EXACT_SHAPLEY_VARIABLES, progress=progress,
            work_per_row=estimated_evaluations(
                params.method, 1, baselines.shape[0], len(variables), params.n_steps, params.n_samples
            ),
        )  # fmt: skip
    attribution_seconds = time.perf_counter() - attributed
    phi = explanation.attributions
    importance = np.abs(phi).mean(axis=0) if len(phi) else np.zeros(len(variables))

    views = made(params.dataset_views, len(rows))
    top, maximizing = _dataset_views(ctx, params, selection, forward, groups, device) if views else (None, None)
    return AttributionResult(
        features=features,
        variables=variables,
        groups=groups,
        output_meaning=record.get("output"),
        selection=selection,
        target=target,
        baseline=baseline.info,
        baseline_rows=baselines.shape[0],
        n_samples=n_samples,
        n_steps=n_steps,
        evaluations=evaluations,
        explanation=explanation,
        interactions=interactions,
        importance=importance,
        views=views,
        top_rows=top,
        maximizing_input=maximizing,
        warnings=[*selection.warnings, *baseline.warnings],
        model_load_seconds=load_seconds,
        cache_hit=cache_hit,
        attribution_seconds=attribution_seconds,
        device=device,
    )


def _dataset_views(
    ctx: JobContext,
    params: TabularAttributionParams,
    selection: RowSelection,
    forward: torch.nn.Module,
    groups: list[list[int]],
    device: torch.device,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the reference rows that activate the target most, the input that maximizes it)."""
    ctx.progress(0.82, "rows that activate the target most")
    with ctx.stage("load"):
        table = selection.reference()
        reference, reference_numbers, features = table.reference, table.reference_numbers, table.features
        ref_x = torch.from_numpy(table.encoded_reference).to(device)
    positions, activations = top_rows(forward, ref_x, params.top_k)
    top = [
        {"index": reference_numbers[p], "activation": float(a), "values": user_values(reference[p], features)}
        for p, a in zip(positions.tolist(), activations.tolist())
    ]
    ctx.progress(0.86, "the input that maximizes the target")
    domain = table.domain
    best = maximize(forward, domain, groups, [reference[p] for p in positions[:STARTS].tolist()], device)
    maximizing = {
        "values": best["values"],
        "activation": best["activation"],
        "started_from_row": reference_numbers[int(positions[best["start"]])],
        "start_activation": best["start_activation"],
        "dataset_max_activation": float(activations[0]) if len(activations) else None,
        "steps": best["steps"],
        "domain": domain.describe(),
        "method": "greedy coordinate ascent from the strongest rows: every observed category, numerics on a "
        "grid refined around the best point, within the observed range",
    }
    return top, maximizing


def _target(params: TabularAttributionParams, record: Mapping[str, Any]) -> dict[str, Any]:
    """The target with its output index resolved from a label, and the label of an index."""
    target = params.target
    if isinstance(target, OutputTarget):
        labels = record.get("labels") or []
        if target.label is not None:
            if target.label not in labels:
                raise JobFailed("invalid-params", "Unknown label", f"{target.label!r}; labels: {labels}")
            index = labels.index(target.label)
        else:
            index = target.index or 0
        resolved = {"type": "output", "index": index}
        if labels and index < len(labels):
            resolved["label"] = labels[index]
        return resolved
    return {"type": "neuron", "layer": target.layer, "unit": target.unit}
