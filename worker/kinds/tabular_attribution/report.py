"""result.json, attributions.csv and the summary of a tabular attribution job: plain data read
off an `AttributionResult`, plus the words that name its target and method (charts use them too)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.kinds.tabular_params import AUTO_MIN_ROWS, TabularAttributionParams
from worker.core.attribution.interaction_result import global_interactions
from worker.kinds.tabular_attribution.compute import AttributionResult
from worker.kinds.tabular_attribution.interaction_report import interaction_document, row_fields
from worker.kinds.tabular_attribution.rows import user_values
from worker.models.tabular import encoded_columns

# A residual is "large" above this share of the row's output difference (the difference is
# floored at 5 % of the mean difference over the rows, so rows whose output barely moves do not
# warn for float rounding).
COMPLETENESS_TOLERANCE = 0.05


@dataclass(frozen=True)
class Wording:
    target: str  # "output 0 (label)", or "output 0: <the model's output meaning>", or "neuron layer[3]"
    target_short: str  # the same for a chart title (no output meaning)
    method: str  # the method and its settings, the baseline and the row count, in one line


def wording(attribution: AttributionResult, params: TabularAttributionParams) -> Wording:
    target = attribution.target
    if target["type"] == "neuron":
        short = f"neuron {target['layer']}[{target['unit']}]"
    else:
        short = f"output {target['index']}" + (f" ({target['label']})" if target.get("label") else "")
    # A labelled output says enough; an unlabelled one also gets the model's words for it.
    text = short
    if target["type"] == "output" and not target.get("label") and attribution.output_meaning:
        text += f": {attribution.output_meaning}"
    return Wording(target=text, target_short=short, method=_method_text(attribution, params))


def attribution_table(attribution: AttributionResult) -> tuple[list[str], list[list[str]]]:
    """attributions.csv: `index`, then one column per variable; 9 significant digits, enough to
    give a float32 attribution back exactly."""
    phi = attribution.explanation.attributions
    header = ["index", *attribution.variables]
    rows = [
        [str(number), *(f"{float(v):.9g}" for v in phi[i])] for i, number in enumerate(attribution.selection.numbers)
    ]
    return header, rows


def result_document(
    attribution: AttributionResult,
    words: Wording,
    chart_notes: dict[str, Any],
    params: TabularAttributionParams,
    *,
    model: str,
    started: float,
    charts_drawn: bool,
) -> tuple[dict[str, Any], list[str]]:
    """(result.json, its warnings: those of reading the rows, then those of completeness)."""
    explanation, variables, features = attribution.explanation, attribution.variables, attribution.features
    phi, importance = explanation.attributions, attribution.importance
    rows, numbers = attribution.selection.rows, attribution.selection.numbers
    warnings = list(attribution.warnings)
    completeness = _completeness(attribution, params, warnings)
    resolved = params.model_dump(mode="json")
    interacting = attribution.interactions is not None
    resolved.update(
        {
            "target": attribution.target,
            "n_steps": attribution.n_steps,
            "n_samples": attribution.n_samples,
            "baseline": attribution.baseline,
            "rows_explained": len(rows),
            "dataset_views": attribution.views,
            "charts": charts_drawn,
        }
    )
    views = (
        {"top_rows": {"source": attribution.selection.source, "rows": attribution.top_rows}}
        if attribution.views
        else {}
    )
    seconds = attribution.attribution_seconds
    document = {
        "kind": "tabular_attribution",
        "model": model,
        "method": params.method,
        "target": {**attribution.target, "description": words.target},
        "units": f"attributions are in the target's units ({words.target}); they add up to output - baseline_output"
        + ("; so do each row's main effects and pairs (each pair once)" if interacting else "")
        if explanation.complete
        else f"{params.method} scores are not additive (see completeness)",
        "variables": variables,
        "variable_info": [{k: f[k] for k in ("name", "type", "categories", "mean", "std") if k in f} for f in features],
        "encoding": {
            "columns": [label for _, label in encoded_columns(features)],
            "groups": {name: list(cols) for name, cols in zip(variables, attribution.groups)},
            "note": "categoricals are one-hot in the listed order, numerics standardized with the manifest mean/std; "
            "attributions are per variable (a categorical's columns summed, or moved together)",
        },
        "baseline": attribution.baseline,
        "rows": [
            {
                "index": numbers[i],
                "values": user_values(rows[i], features),
                "attributions": {name: float(phi[i, j]) for j, name in enumerate(variables)},
                "output": float(explanation.outputs[i]),
                "baseline_output": float(explanation.baseline_outputs[i]),
                "residual": float(explanation.residuals[i]),
                **(row_fields(attribution, i) if interacting else {}),
            }
            for i in range(len(rows))
        ],
        "global_importance": {name: float(importance[j]) for j, name in enumerate(variables)},
        "mean_attribution": {name: float(phi[:, j].mean()) if len(phi) else 0.0 for j, name in enumerate(variables)},
        "ranking": ranking(attribution),
        **(interaction_document(attribution, params) if interacting else {}),
        "completeness": completeness,
        "warnings": warnings,
        **views,
        "charts": chart_notes,
        **({"maximizing_input": attribution.maximizing_input} if attribution.views else {}),
        "skipped": skipped(attribution, params, charts_drawn),
        "params": resolved,
        "seed": params.seed,
        "timings": {
            "model_load_seconds": round(attribution.model_load_seconds, 4),
            "attribution_seconds": round(seconds, 4),
            "rows_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None,
            "total_seconds": round(time.perf_counter() - started, 4),
        },
        "device": str(attribution.device),
    }
    return document, warnings


def skipped(attribution: AttributionResult, params: TabularAttributionParams, charts_drawn: bool) -> dict[str, str]:
    """result.json's `skipped`: each part of a full result this job did not make, why, and the
    param that asks for it (empty when nothing was skipped)."""
    rows = len(attribution.selection.rows)

    def why(param: str, asked: bool | None) -> str:
        if asked is False:
            return f"`{param}` is false; ask with \"{param}\": true"
        return (
            f"the job explains {rows} row{'' if rows == 1 else 's'} and leaves `{param}` unset (made by default from {AUTO_MIN_ROWS} rows on); "
            f"ask with \"{param}\": true"
        )

    out: dict[str, str] = {}
    if not attribution.views:
        views = why("dataset_views", params.dataset_views)
        out["top_rows"] = f"not computed: {views}"
        out["maximizing_input"] = f"not computed: {views}"
    if not charts_drawn:
        names = (
            "importance.png, interactions.png, pair_view.png, interactions_row_<index>.png"
            if attribution.interactions is not None
            else "importance.png, waterfall_<index>.png or summary.png"
        )
        out["charts"] = f"not drawn ({names}): {why('charts', params.charts)}"
    return out


def summary(
    attribution: AttributionResult,
    words: Wording,
    warnings: list[str],
    params: TabularAttributionParams,
    *,
    started: float,
) -> dict[str, Any]:
    residuals = attribution.explanation.residuals
    rows = len(attribution.selection.rows)
    top_pair = {}
    if attribution.interactions is not None and rows:
        top = global_interactions(attribution.interactions.result.interactions, attribution.variables)[0]
        top_pair = {"top_pair": top["variables"], "top_pair_mean_abs": top["mean_abs"]}
    return {
        "method": params.method,
        "target": words.target,
        "rows": rows,
        "variables": len(attribution.variables),
        "top_variables": ranking(attribution)[:3],
        **top_pair,
        "max_abs_residual": float(np.abs(residuals).max()) if rows else 0.0,
        "warnings": len(warnings),
        "baseline": attribution.baseline["type"],
        "cache_hit": attribution.cache_hit,
        "seconds": round(time.perf_counter() - started, 3),
    }


def ranking(attribution: AttributionResult) -> list[str]:
    """The variables by global importance, largest first (ties in manifest order)."""
    return [attribution.variables[j] for j in np.argsort(-attribution.importance, kind="stable")]


def _method_text(attribution: AttributionResult, params: TabularAttributionParams) -> str:
    detail = [params.method]
    if params.method == "shapley_interactions":
        detail.append(f"index {params.index}")
        detail.append("exact" if attribution.n_samples is None else "sampled")
    if attribution.n_steps is not None:
        detail.append(f"n_steps={attribution.n_steps}")
    if attribution.n_samples is not None:
        detail.append(f"n_samples={attribution.n_samples}")
    baseline: Mapping[str, Any] = attribution.baseline
    kind = baseline["type"]
    if kind == "background":
        kind = f"background {baseline['dataset']} x{baseline['size']}"
    detail.append(f"baseline {kind}")
    detail.append(f"{len(attribution.selection.rows)} rows")
    return ", ".join(detail)


def _completeness(
    attribution: AttributionResult, params: TabularAttributionParams, warnings: list[str]
) -> dict[str, Any]:
    """How far the attributions are from adding up to output - baseline_output (for the methods
    that claim they do), with a warning naming the knob to turn when some rows are far off."""
    explanation, numbers, n_samples = attribution.explanation, attribution.selection.numbers, attribution.n_samples
    residuals = explanation.residuals
    difference = explanation.outputs - explanation.baseline_outputs
    info: dict[str, Any] = {
        "expected": explanation.complete,
        "max_abs_residual": float(np.abs(residuals).max()) if len(residuals) else 0.0,
        "mean_abs_residual": float(np.abs(residuals).mean()) if len(residuals) else 0.0,
        "mean_abs_output_difference": float(np.abs(difference).mean()) if len(difference) else 0.0,
        "tolerance": COMPLETENESS_TOLERANCE,
    }
    if not explanation.complete:
        info["note"] = (
            f"{params.method} attributions are not meant to add up to output - baseline_output; the residual is informative only"
        )
        return info
    floor = 0.05 * float(np.abs(difference).mean()) if len(difference) else 0.0
    scale = np.maximum(np.abs(difference), max(floor, 1e-6))
    relative = np.abs(residuals) / scale
    large = np.flatnonzero(relative > COMPLETENESS_TOLERANCE)
    info["rows_above_tolerance"] = int(large.size)
    if large.size:
        worst = int(large[np.argmax(relative[large])])
        if params.method in ("integrated_gradients", "integrated_hessians"):
            knob = f"n_steps={attribution.n_steps}: raise n_steps"
        elif params.method in ("gradient_shap", "shapley_sampling", "kernel_shap") or (
            params.method == "shapley_interactions" and n_samples is not None
        ):
            knob = f"n_samples={n_samples}: raise n_samples"
        else:
            knob = "the model has nonlinearities the method does not handle exactly (e.g. functional activations)"
        warnings.append(
            f"{large.size} of {len(residuals)} rows have a completeness residual above {COMPLETENESS_TOLERANCE:.0%} of their "
            f"output difference (worst: row {numbers[worst]}, residual {residuals[worst]:.4g} of {difference[worst]:.4g}); "
            f"{params.method} used {knob}"
        )
    return info
