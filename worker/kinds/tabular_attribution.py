"""The `tabular_attribution` job: which variables drive an output or a hidden neuron.

Reads the rows (a CSV dataset, or inline), encodes them with the model's feature manifest,
resolves the baseline, runs the attribution method (worker.core.attribution), and writes:

- `attributions.csv`: one row per explained row (`index`, then one column per variable);
- `result.json`: variables, per-row attributions/output/baseline output/residual, global
  importance, warnings, the rows that activate the target most, the input that maximizes it,
  and the resolved parameters;
- `importance.png` (global importance bars), `waterfall_<index>.png` per row when there are at
  most 10 rows, and `summary.png` (a beeswarm of every row's attributions) from 10 rows on.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from service.kinds.tabular_cells import tabular_features
from service.kinds.tabular_checks import check_tabular_attribution, row_problems
from service.kinds.tabular_cost import estimated_evaluations, evaluation_limit_message, resolved_n_samples
from service.kinds.tabular_params import (
    BASELINE_FREE_METHODS,
    MAX_EXACT_SHAPLEY_VARIABLES,
    MAX_MODEL_EVALUATIONS,
    MAX_ROWS,
    BackgroundBaseline,
    OutputTarget,
    RowBaseline,
    TabularAttributionParams,
)
from worker.context import ArtifactBlob, JobContext, JobFailed, JobOutput
from worker.core.attribution import explain, target_forward
from worker.core.attribution.charts import beeswarm_png, beeswarm_sample, importance_png, waterfall_png
from worker.core.attribution.extremes import STARTS, maximize, observed_domain, top_rows
from worker.models.tabular import encode_rows, encoded_columns, variable_groups

MAX_WATERFALLS = 10  # a waterfall chart per row up to this many rows
MIN_SUMMARY_ROWS = 10  # a beeswarm summary from this many rows on
# A residual is "large" above this share of the row's output difference (the difference is
# floored at 5 % of the mean difference over the rows, so rows whose output barely moves do not
# warn for float rounding).
COMPLETENESS_TOLERANCE = 0.05


def run(ctx: JobContext, params: TabularAttributionParams) -> JobOutput:
    started = time.perf_counter()
    ctx.progress(0.01, "loading the model", force=True)
    loaded, cache_hit, load_seconds = ctx.models.load(ctx.tenant, ctx.model)
    model, record = loaded.module, loaded.record
    check_tabular_attribution(params, record)  # the submit-time check, now with the record as loaded
    features = tabular_features(record)
    variables = [f["name"] for f in features]
    groups = list(variable_groups(features).values())
    device = torch.device(ctx.device)
    warnings: list[str] = []

    ctx.progress(0.03, "reading rows")
    rows, numbers, reference, reference_numbers, source = _rows(ctx, params, features, warnings)
    x = torch.from_numpy(encode_rows(rows, features)).to(device)

    target = _target(params, record)
    forward = target_forward(model, target)
    try:
        forward(x[:1])
    except (KeyError, IndexError) as exc:
        layers = ", ".join(layer["name"] for layer in record.get("layers") or [])
        raise JobFailed("invalid-params", "Invalid target", f"{exc.args[0] if exc.args else exc}" + (f"; layers: {layers}" if layers else "")) from None

    baselines, baseline_info = _baseline(ctx, params, features, reference, source, warnings)
    if params.method in BASELINE_FREE_METHODS:
        baseline_info["used_by_method"] = False
        baseline_info["note"] = (
            f"{params.method} reads the gradient at the input and uses no baseline; baseline_output is the "
            "baseline's output, for reference only"
        )
    baselines = baselines.to(device)
    evaluations = estimated_evaluations(
        params.method, len(rows), baselines.shape[0], len(variables), params.n_steps, params.n_samples
    )
    if evaluations > MAX_MODEL_EVALUATIONS:
        raise JobFailed(
            "limit-exceeded", "The job is too large",
            evaluation_limit_message(params.method, evaluations, len(rows), baselines.shape[0]),
        )  # fmt: skip

    n_samples = resolved_n_samples(params.method, params.n_samples, len(variables))
    ctx.progress(0.08, f"{params.method} on {len(rows)} rows", force=True)
    attributed = time.perf_counter()
    explanation = explain(
        forward, params.method, x, baselines, groups,
        n_steps=params.n_steps, n_samples=n_samples, seed=params.seed, max_variables=MAX_EXACT_SHAPLEY_VARIABLES,
        work_per_row=estimated_evaluations(
            params.method, 1, baselines.shape[0], len(variables), params.n_steps, params.n_samples
        ),
        progress=lambda fraction: ctx.progress(0.08 + 0.72 * fraction, f"{params.method}: {fraction:.0%} of the rows"),
    )  # fmt: skip
    attribution_seconds = time.perf_counter() - attributed
    phi = explanation.attributions
    importance = np.abs(phi).mean(axis=0) if len(phi) else np.zeros(len(variables))
    ranking = [variables[j] for j in np.argsort(-importance, kind="stable")]
    completeness = _completeness(params, explanation, numbers, n_samples, warnings)

    ctx.progress(0.82, "rows that activate the target most")
    ref_x = torch.from_numpy(encode_rows(reference, features)).to(device)
    positions, activations = top_rows(forward, ref_x, params.top_k)
    top = [
        {"index": reference_numbers[p], "activation": float(a), "values": _user_values(reference[p], features)}
        for p, a in zip(positions.tolist(), activations.tolist())
    ]
    ctx.progress(0.86, "the input that maximizes the target")
    domain = observed_domain(features, reference)
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

    ctx.progress(0.92, "drawing charts")
    target_text = _target_text(target, record)
    method_text = _method_text(params, n_samples, baseline_info, len(rows))
    charts, chart_notes = _charts(
        variables, features, rows, numbers, explanation, importance,
        _target_short(target), target_text, method_text, background=baselines.shape[0] > 1, seed=params.seed,
    )  # fmt: skip

    resolved = params.model_dump(mode="json")
    resolved.update(
        {"target": target, "n_samples": n_samples, "baseline": baseline_info, "rows_explained": len(rows)}
    )
    document = {
        "kind": "tabular_attribution",
        "model": ctx.model,
        "method": params.method,
        "target": {**target, "description": target_text},
        "units": f"attributions are in the target's units ({target_text}); they add up to output - baseline_output"
        if explanation.complete
        else f"{params.method} scores are not additive (see completeness)",
        "variables": variables,
        "variable_info": [
            {k: f[k] for k in ("name", "type", "categories", "mean", "std") if k in f} for f in features
        ],
        "encoding": {
            "columns": [label for _, label in encoded_columns(features)],
            "groups": {name: list(cols) for name, cols in zip(variables, groups)},
            "note": "categoricals are one-hot in the listed order, numerics standardized with the manifest mean/std; "
            "attributions are per variable (a categorical's columns summed, or moved together)",
        },
        "baseline": baseline_info,
        "rows": [
            {
                "index": numbers[i],
                "values": _user_values(rows[i], features),
                "attributions": {name: float(phi[i, j]) for j, name in enumerate(variables)},
                "output": float(explanation.outputs[i]),
                "baseline_output": float(explanation.baseline_outputs[i]),
                "residual": float(explanation.residuals[i]),
            }
            for i in range(len(rows))
        ],
        "global_importance": {name: float(importance[j]) for j, name in enumerate(variables)},
        "mean_attribution": {name: float(phi[:, j].mean()) if len(phi) else 0.0 for j, name in enumerate(variables)},
        "ranking": ranking,
        "completeness": completeness,
        "warnings": warnings,
        "top_rows": {"source": source, "rows": top},
        "charts": chart_notes,
        "maximizing_input": maximizing,
        "params": resolved,
        "seed": params.seed,
        "timings": {
            "model_load_seconds": round(load_seconds, 4),
            "attribution_seconds": round(attribution_seconds, 4),
            "rows_per_second": round(len(rows) / attribution_seconds, 2) if attribution_seconds > 0 else None,
            "total_seconds": round(time.perf_counter() - started, 4),
        },
        "device": str(device),
    }
    artifacts = [
        ArtifactBlob("attributions.csv", "text/csv", _csv(variables, numbers, phi)),
        ArtifactBlob("result.json", "application/json", json.dumps(document, indent=1, default=_jsonable).encode()),
        *charts,
    ]
    summary = {
        "method": params.method,
        "target": target_text,
        "rows": len(rows),
        "variables": len(variables),
        "top_variables": ranking[:3],
        "max_abs_residual": float(np.abs(explanation.residuals).max()) if len(rows) else 0.0,
        "warnings": len(warnings),
        "baseline": baseline_info["type"],
        "cache_hit": cache_hit,
        "seconds": round(time.perf_counter() - started, 3),
    }
    ctx.progress(1.0, "done", force=True)
    return JobOutput(summary=summary, artifacts=artifacts)


# ----------------------------------------------------------------------------------- rows


def _table_rows(ctx: JobContext, dataset: str, features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    table = ctx.datasets.table(ctx.tenant, dataset)
    missing = [f["name"] for f in features if table and f["name"] not in table[0]]
    if missing:
        raise JobFailed(
            "invalid-rows", f"Dataset {dataset!r} lacks variables of the model",
            f"missing columns: {', '.join(missing)}; the model needs {', '.join(f['name'] for f in features)}",
        )  # fmt: skip
    return table


def _valid(rows: Sequence[Mapping[str, Any]], numbers: Sequence[int], features) -> tuple[list, list, list]:
    bad = {row for row, _, _ in row_problems(rows, features, numbers)}
    keep = [i for i, n in enumerate(numbers) if n not in bad]
    return [rows[i] for i in keep], [numbers[i] for i in keep], sorted(bad)


def _rows(ctx, params: TabularAttributionParams, features, warnings: list[str]):
    """(rows, their numbers, reference rows, their numbers, source text). The reference rows
    (every encodable row of the dataset, or the inline rows) give the mean baseline, the top
    rows and the observed domain."""
    if params.rows is not None:
        problems = row_problems(params.rows, features)
        if problems:
            raise JobFailed("invalid-rows", "Rows cannot be encoded", "; ".join(m for _, _, m in problems[:10]))
        numbers = list(range(len(params.rows)))
        return list(params.rows), numbers, list(params.rows), numbers, f"the {len(params.rows)} inline rows"
    table = _table_rows(ctx, params.dataset, features)
    count = len(table)
    if params.indices is not None:
        for position, index in enumerate(params.indices):
            if index >= count:
                raise JobFailed(
                    "invalid-params", "Row index out of range",
                    f"indices[{position}] = {index}: dataset {params.dataset!r} has {count} rows (0 to {count - 1})",
                )  # fmt: skip
        numbers = list(params.indices)
    elif params.sample is not None:
        size = min(params.sample, count)
        if size < params.sample:
            warnings.append(f"sample = {params.sample} but dataset {params.dataset!r} has {count} rows: all are explained")
        numbers = sorted(np.random.default_rng(params.seed).choice(count, size, replace=False).tolist())
    else:
        if count > MAX_ROWS:
            raise JobFailed(
                "limit-exceeded", "Too many rows",
                f"dataset {params.dataset!r} has {count} rows; at most {MAX_ROWS} are explained per job: use `sample` or `indices`",
            )  # fmt: skip
        numbers = list(range(count))
    rows = [table[i] for i in numbers]
    problems = row_problems(rows, features, numbers)
    if problems:
        raise JobFailed(
            "invalid-rows", f"Rows of dataset {params.dataset!r} cannot be encoded",
            "; ".join(m for _, _, m in problems[:10]) + (f"; ... {len(problems)} problems in all" if len(problems) > 10 else ""),
        )  # fmt: skip
    reference, reference_numbers, bad = _valid(table, list(range(count)), features)
    if bad:
        warnings.append(
            f"{len(bad)} rows of dataset {params.dataset!r} cannot be encoded (first: row {bad[0]}) and are left out "
            "of the mean baseline, the top rows and the observed domain"
        )
    return rows, numbers, reference, reference_numbers, f"dataset {params.dataset!r} ({len(reference)} rows)"


def _user_values(row: Mapping[str, Any], features) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in features:
        value = row.get(f["name"])
        if f["type"] == "numeric":
            out[f["name"]] = float(value)
        else:
            out[f["name"]] = str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return out


# ----------------------------------------------------------------------------------- target, baseline


def _target(params: TabularAttributionParams, record: Mapping[str, Any]) -> dict[str, Any]:
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


def _target_text(target: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    if target["type"] == "neuron":
        return f"neuron {target['layer']}[{target['unit']}]"
    text = f"output {target['index']}"
    if target.get("label"):
        text += f" ({target['label']})"
    elif record.get("output"):
        text += f": {record['output']}"
    return text


def _mean_row(rows: Sequence[Mapping[str, Any]], features) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in features:
        name = f["name"]
        if f["type"] == "numeric":
            row[name] = float(np.mean([float(r[name]) for r in rows]))
        else:
            counts = Counter(_user_values(r, [f])[name] for r in rows)
            row[name] = max(f["categories"], key=lambda c: (counts.get(c, 0), -f["categories"].index(c)))
    return row


def _baseline(ctx, params: TabularAttributionParams, features, reference, source: str, warnings: list[str]):
    baseline = params.baseline
    width = sum(len(f["categories"]) if f["type"] == "categorical" else 1 for f in features)
    if baseline == "zeros":
        row = {f["name"]: (float(f.get("mean", 0.0)) if f["type"] == "numeric" else None) for f in features}
        info = {
            "type": "zeros",
            "row": row,
            "note": "all zeros in the encoded space: each numeric at its manifest mean, and no category "
            "of a categorical (all its one-hot columns 0), which no real row has",
        }
        return torch.zeros(1, width), info
    if baseline == "mean":
        row = _mean_row(reference, features)
        info = {"type": "mean", "row": row, "source": source, "note": "mean of each numeric, most frequent category of each categorical"}
        return torch.from_numpy(encode_rows([row], features)), info
    if isinstance(baseline, RowBaseline):
        problems = row_problems([baseline.row], features)
        if problems:
            raise JobFailed("invalid-rows", "The baseline row cannot be encoded", "; ".join(m for _, _, m in problems))
        return torch.from_numpy(encode_rows([baseline.row], features)), {"type": "row", "row": _user_values(baseline.row, features)}
    assert isinstance(baseline, BackgroundBaseline)
    table = _table_rows(ctx, baseline.background, features)
    valid, numbers, bad = _valid(table, list(range(len(table))), features)
    if not valid:
        raise JobFailed("invalid-rows", "No background row can be encoded", f"dataset {baseline.background!r}")
    if bad:
        warnings.append(f"{len(bad)} rows of background dataset {baseline.background!r} cannot be encoded and were skipped")
    size = min(baseline.size, len(valid))
    picks = sorted(np.random.default_rng([params.seed, 1]).choice(len(valid), size, replace=False).tolist())
    info = {
        "type": "background",
        "dataset": baseline.background,
        "size": size,
        "indices": [numbers[p] for p in picks],
        "note": "attributions are the expectation over the background rows (the SHAP convention); "
        "baseline_output is the mean output over them",
    }
    return torch.from_numpy(encode_rows([valid[p] for p in picks], features)), info


def _method_text(params: TabularAttributionParams, n_samples: int | None, baseline: Mapping[str, Any], rows: int) -> str:
    detail = [params.method]
    if params.method == "integrated_gradients":
        detail.append(f"n_steps={params.n_steps}")
    if n_samples is not None:
        detail.append(f"n_samples={n_samples}")
    kind = baseline["type"]
    if kind == "background":
        kind = f"background {baseline['dataset']} x{baseline['size']}"
    detail.append(f"baseline {kind}")
    detail.append(f"{rows} rows")
    return ", ".join(detail)


# ----------------------------------------------------------------------------------- checks, output


def _completeness(params, explanation, numbers, n_samples, warnings: list[str]) -> dict[str, Any]:
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
        info["note"] = f"{params.method} attributions are not meant to add up to output - baseline_output; the residual is informative only"
        return info
    floor = 0.05 * float(np.abs(difference).mean()) if len(difference) else 0.0
    scale = np.maximum(np.abs(difference), max(floor, 1e-6))
    relative = np.abs(residuals) / scale
    large = np.flatnonzero(relative > COMPLETENESS_TOLERANCE)
    info["rows_above_tolerance"] = int(large.size)
    if large.size:
        worst = int(large[np.argmax(relative[large])])
        if params.method == "integrated_gradients":
            knob = f"n_steps={params.n_steps}: raise n_steps"
        elif params.method in ("gradient_shap", "shapley_sampling", "kernel_shap"):
            knob = f"n_samples={n_samples}: raise n_samples"
        else:
            knob = "the model has nonlinearities the method does not handle exactly (e.g. functional activations)"
        warnings.append(
            f"{large.size} of {len(residuals)} rows have a completeness residual above {COMPLETENESS_TOLERANCE:.0%} of their "
            f"output difference (worst: row {numbers[worst]}, residual {residuals[worst]:.4g} of {difference[worst]:.4g}); "
            f"{params.method} used {knob}"
        )
    return info


def _csv(variables: Sequence[str], numbers: Sequence[int], phi: np.ndarray) -> bytes:
    buffer = io.StringIO()
    buffer.write(",".join(["index", *(_csv_cell(v) for v in variables)]) + "\n")
    for i, number in enumerate(numbers):
        buffer.write(",".join([str(number), *(f"{float(v):.9g}" for v in phi[i])]) + "\n")
    return buffer.getvalue().encode()


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _target_short(target: Mapping[str, Any]) -> str:
    if target["type"] == "neuron":
        return f"neuron {target['layer']}[{target['unit']}]"
    return f"output {target['index']}" + (f" ({target['label']})" if target.get("label") else "")


def _charts(
    variables, features, rows, numbers, explanation, importance, short, target_text, method_text, *, background: bool,
    seed: int,
) -> tuple[list[ArtifactBlob], dict[str, Any]]:  # fmt: skip
    phi = explanation.attributions
    blobs = [
        ArtifactBlob(
            "importance.png", "image/png",
            importance_png(
                variables, importance.tolist(), title=f"What drives {short}: mean |attribution| per variable",
                subtitle=f"{target_text}\n{method_text}",
            ),
        )  # fmt: skip
    ]
    if len(rows) <= MAX_WATERFALLS:
        for i, number in enumerate(numbers):
            blobs.append(
                ArtifactBlob(
                    f"waterfall_{number}.png", "image/png",
                    waterfall_png(
                        variables, phi[i].tolist(), _user_values(rows[i], features),
                        output=float(explanation.outputs[i]), baseline_output=float(explanation.baseline_outputs[i]),
                        title=f"Row {number}: what moves {short} from the baseline",
                        subtitle=f"{target_text}\n{method_text}",
                        baseline_label="E[f(background)]" if background else "f(baseline)",
                    ),
                )  # fmt: skip
            )
    notes: dict[str, Any] = {}
    if len(rows) >= MIN_SUMMARY_ROWS:
        shown = beeswarm_sample(len(rows), seed)
        sampled = len(shown) < len(rows)
        sample_note = f"a random sample, seed {seed}"
        notes["summary.png"] = {
            "rows_shown": len(shown),
            "rows": len(rows),
            "note": f"one dot per row; {len(shown)} of the {len(rows)} rows are drawn ({sample_note}), so that dots "
            "do not pile into blots; every row is in `rows` and attributions.csv"
            if sampled
            else "one dot per row, every row drawn",
        }
        colours: list[list[float]] = []
        for f in features:
            name = f["name"]
            if f["type"] == "numeric":
                values = np.array([float(r[name]) for r in rows])
                ranks = values.argsort(kind="stable").argsort(kind="stable")
                colours.append((ranks / max(1, len(values) - 1))[shown].tolist())
            else:
                colours.append([f["categories"].index(_user_values(rows[i], [f])[name]) for i in shown])
        blobs.append(
            ArtifactBlob(
                "summary.png", "image/png",
                beeswarm_png(
                    variables, phi[shown], colours, [f["type"] for f in features],
                    [f.get("categories") for f in features],
                    title=f"What drives {short}, row by row",
                    subtitle=f"{target_text}\n{method_text}", total_rows=len(rows), sample_note=sample_note,
                ),
            )  # fmt: skip
        )
    return blobs, notes
