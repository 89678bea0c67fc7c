"""What the interaction methods (shapley_interactions, integrated_hessians) add to a tabular
attribution job's result.json, and their tables: plain data read off the InteractionResult.

result.json, per entry of `rows`: `main_effects` {variable: value}, `interactions`
[{"variables": [a, b], "value": v}] (largest |value| first; every pair up to MAX_ROW_PAIRS, else
the largest and `interactions_omitted` with the count and sum of the rest, so that main effects
plus pairs still add up to output - baseline_output + residual), and, when sampled, the standard
error of each value. Top level: `global_interactions` (every pair's mean |value| over the rows,
largest first), `global_main_effects`, `interactions` (how the values were computed: index,
exact or sampled with its budget, model evaluations) and `pair`: the pair asked for (`pair`) or
the strongest one, with the rows where it is strongest and its dataset view, the mean
interaction per cell of its two variables (categories, or quantile bins of a numeric), where
"garden in spring" is read off directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.kinds.tabular_params import TabularAttributionParams
from worker.core.attribution.charts import fmt
from worker.core.attribution.interaction_result import InteractionResult, global_interactions, strongest_rows
from worker.kinds.tabular_attribution.compute import AttributionResult
from worker.kinds.tabular_attribution.rows import user_values

MAX_ROW_PAIRS = 66  # every pair of up to 12 variables (the exact range) is listed per row
QUANTILE_BINS = 4  # a numeric variable of the pair view: its quartiles over the explained rows
MAX_CATEGORY_BINS = 12  # a categorical of the pair view: its most frequent categories, the rest as one


def interactions_of(attribution: AttributionResult) -> InteractionResult:
    assert attribution.interactions is not None, "an interaction method's result"
    return attribution.interactions.result


def row_fields(attribution: AttributionResult, i: int) -> dict[str, Any]:
    """Row i's `main_effects`, `interactions` (and their standard errors when sampled)."""
    result, variables = interactions_of(attribution), attribution.variables
    first, second = np.triu_indices(len(variables), k=1)
    values = result.interactions[i, first, second]
    order = np.argsort(-np.abs(values), kind="stable")
    listed, omitted = order[:MAX_ROW_PAIRS], order[MAX_ROW_PAIRS:]
    fields: dict[str, Any] = {
        "main_effects": {name: float(result.main_effects[i, j]) for j, name in enumerate(variables)},
        "interactions": [],
    }
    for k in listed.tolist():
        entry: dict[str, Any] = {"variables": [variables[first[k]], variables[second[k]]], "value": float(values[k])}
        if result.interaction_errors is not None:
            entry["std_error"] = float(result.interaction_errors[i, first[k], second[k]])
        fields["interactions"].append(entry)
    if len(omitted):
        fields["interactions_omitted"] = {"pairs": int(len(omitted)), "sum": float(values[omitted].sum())}
    if result.main_errors is not None:
        fields["main_effect_std_errors"] = {name: float(result.main_errors[i, j]) for j, name in enumerate(variables)}
    return fields


def chosen_pair(attribution: AttributionResult, params: TabularAttributionParams) -> tuple[int, int, str]:
    """(first, second, why): the asked `pair`, else the pair with the largest mean |value|."""
    variables = attribution.variables
    if params.pair is not None:
        return variables.index(params.pair[0]), variables.index(params.pair[1]), "asked for (`pair`)"
    top = global_interactions(interactions_of(attribution).interactions)[0]["variables"]
    return int(top[0]), int(top[1]), "the pair with the largest mean |interaction| over the rows"


def view_axis(attribution: AttributionResult, variable: int) -> tuple[dict[str, Any], list[str], np.ndarray]:
    """(the axis as result.json states it, its bin labels, the bin of each explained row)."""
    feature = attribution.features[variable]
    name = feature["name"]
    rows = attribution.selection.rows
    shown = [user_values(row, [feature])[name] for row in rows]
    if feature["type"] == "numeric":
        values = np.array(shown, dtype=np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, QUANTILE_BINS + 1))) if len(values) else np.zeros(1)
        if len(edges) < 2:
            return (
                {"variable": name, "binning": "one value", "bins": [fmt(edges[0])]},
                [fmt(edges[0])],
                np.zeros(len(rows), int),
            )
        where = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        labels = [f"{fmt(edges[k])} – {fmt(edges[k + 1])}" for k in range(len(edges) - 1)]
        axis = {"variable": name, "binning": f"quantiles of the explained rows (up to {QUANTILE_BINS} bins; the "
                "last bin includes its upper edge)", "bins": labels, "edges": [float(e) for e in edges]}  # fmt: skip
        return axis, labels, where
    counts = {c: shown.count(c) for c in feature["categories"]}
    present = [c for c in feature["categories"] if counts[c]]
    if len(present) > MAX_CATEGORY_BINS:
        kept = sorted(present, key=lambda c: (-counts[c], feature["categories"].index(c)))[: MAX_CATEGORY_BINS - 1]
        kept = [c for c in feature["categories"] if c in kept]
        labels = [*kept, f"other ({len(present) - len(kept)} categories)"]
        where = np.array([kept.index(v) if v in kept else len(kept) for v in shown], dtype=int)
        binning = f"the {len(kept)} most frequent categories among the explained rows, the rest as one bin"
    else:
        labels = present
        where = np.array([present.index(v) for v in shown], dtype=int)
        binning = "categories present among the explained rows"
    return {"variable": name, "binning": binning, "bins": labels}, labels, where


def pair_view(attribution: AttributionResult, pair: tuple[int, int]) -> dict[str, Any]:
    """The mean interaction of `pair` per cell of its two variables' bins, over the explained
    rows; `means` and `counts` [A, B] for the chart, `cells` (those with rows) for reading."""
    values = interactions_of(attribution).interactions[:, pair[0], pair[1]]
    (axis_a, labels_a, bin_a), (axis_b, labels_b, bin_b) = (view_axis(attribution, v) for v in pair)
    counts = np.zeros((len(labels_a), len(labels_b)), dtype=int)
    sums = np.zeros(counts.shape)
    np.add.at(counts, (bin_a, bin_b), 1)
    np.add.at(sums, (bin_a, bin_b), values)
    means = np.divide(sums, counts, out=np.zeros(counts.shape), where=counts > 0)
    names = (axis_a["variable"], axis_b["variable"])
    cells = [
        {"values": {names[0]: labels_a[r], names[1]: labels_b[c]}, "rows": int(counts[r, c]), "mean_interaction": float(means[r, c])}
        for r in range(len(labels_a))
        for c in range(len(labels_b))
        if counts[r, c]
    ]  # fmt: skip
    return {
        "statistic": "the mean interaction of the pair over the explained rows in each cell (signed, target units)",
        "axes": [axis_a, axis_b],
        "cells": cells,
        "means": means,
        "counts": counts,
    }


def interaction_document(attribution: AttributionResult, params: TabularAttributionParams) -> dict[str, Any]:
    """result.json's top-level fields of an interaction method."""
    result, variables, numbers = interactions_of(attribution), attribution.variables, attribution.selection.numbers
    counted = attribution.interactions
    assert counted is not None
    ranked = global_interactions(result.interactions, variables)
    if result.interaction_errors is not None:
        first, second = np.triu_indices(len(variables), k=1)
        errors = result.interaction_errors[:, first, second].mean(axis=0) if len(result) else np.zeros(len(first))
        by_pair = {(variables[a], variables[b]): float(e) for a, b, e in zip(first, second, errors)}
        for entry in ranked:
            entry["mean_std_error"] = by_pair[tuple(entry["variables"])]
    a, b, why = chosen_pair(attribution, params)
    view = pair_view(attribution, (a, b))
    if attribution.baseline_rows == 1:
        view["note"] = (
            "against a single baseline row, a row that shares the baseline's value of either variable has this "
            "pair at exactly 0 (the variable does not move); a background baseline averages over many"
        )
    strongest = strongest_rows(result.interactions, (a, b), params.top_k) if len(result) else np.zeros(0, int)
    sampled = result.interaction_errors is not None
    how: dict[str, Any] = {
        "method": result.method,
        "index": result.index,
        "exact": result.exact,
        "efficient": result.complete,
        "computation": result.details,
        "units": "main effects and pairs are in the target's units; per row, the main effects plus each pair once "
        "add up to output - baseline_output (residual: what they miss)",
        "attributions": "each row's `attributions` are its main effects plus half of each of its pairs"
        + (" (for k-SII: the Shapley values)" if result.index == "k-SII" else "")
        + ("; integrated gradients, up to the quadrature" if result.method == "integrated_hessians" else ""),
        "model_evaluations": {
            "estimated": attribution.evaluations,
            "forward_rows": counted.forward_rows,
            "gradient_rows": counted.gradient_rows,
            "note": "estimated: the cost model's count, which the limit uses; forward_rows and gradient_rows: what "
            "the model did, counted on its forward (rows through it, rows of each gradient with respect to its "
            "input), including the rows' own outputs and the baseline output",
        },
    }
    if sampled:
        how["standard_errors"] = (
            "sampled: every value carries its standard error (`std_error`, `main_effect_std_errors`; "
            "`mean_std_error` per pair of global_interactions is the mean over the rows); raise `n_samples` "
            "(the budget of coalitions) to shrink them"
        )
    return {
        "interactions": how,
        "global_interactions": ranked,
        "global_main_effects": {
            name: float(np.abs(result.main_effects[:, j]).mean()) if len(result) else 0.0
            for j, name in enumerate(variables)
        },  # fmt: skip
        "pair": {
            "variables": [variables[a], variables[b]],
            "chosen": why,
            "mean_abs": float(np.abs(result.interactions[:, a, b]).mean()) if len(result) else 0.0,
            "strongest_rows": [
                {
                    "index": numbers[p],
                    "interaction": float(result.interactions[p, a, b]),
                    "output": float(result.outputs[p]),
                    "values": {
                        k: v
                        for k, v in user_values(attribution.selection.rows[p], attribution.features).items()
                        if k in (variables[a], variables[b])
                    },
                }  # fmt: skip
                for p in strongest.tolist()
            ],
            "view": {k: v for k, v in view.items() if k not in ("means", "counts")},
        },
    }


def interaction_tables(attribution: AttributionResult) -> dict[str, tuple[list[str], list[list[str]]]]:
    """interactions.csv (one line per explained row and pair: `index`, `variable_a`,
    `variable_b`, `interaction`, and `std_error` when sampled) and main_effects.csv (`index`,
    then one column per variable); 9 significant digits."""
    result, variables, numbers = interactions_of(attribution), attribution.variables, attribution.selection.numbers
    first, second = np.triu_indices(len(variables), k=1)
    sampled = result.interaction_errors is not None
    header = ["index", "variable_a", "variable_b", "interaction", *(["std_error"] if sampled else [])]
    lines = []
    for i, number in enumerate(numbers):
        for a, b in zip(first.tolist(), second.tolist()):
            line = [str(number), variables[a], variables[b], f"{result.interactions[i, a, b]:.9g}"]
            if sampled:
                line.append(f"{result.interaction_errors[i, a, b]:.9g}")
            lines.append(line)
    mains = [[str(number), *(f"{float(v):.9g}" for v in result.main_effects[i])] for i, number in enumerate(numbers)]
    return {"interactions.csv": (header, lines), "main_effects.csv": (["index", *variables], mains)}
