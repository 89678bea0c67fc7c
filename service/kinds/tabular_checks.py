"""The `tabular_attribution` checks against the model's and the datasets' catalog records.

Run at submit by the API and again by the worker: rows against the model's feature manifest
(the same rules as `worker.models.tabular.encode_rows`, torch-free), the target against the
model's outputs and layers, the datasets' records (row count, columns) against the request, and
the model-evaluation limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from service.jobspec import DatasetUse
from service.kinds.layers import find_layer
from service.kinds.tabular_cells import cell_problem, listed_categories, table_problems, tabular_features
from service.kinds.tabular_cost import (
    estimated_evaluations,
    evaluation_limit_message,
    interactions_sampled,
    minimum_interaction_budget,
)
from service.kinds.tabular_params import (
    INTERACTION_INDICES,
    INTERACTION_METHODS,
    MAX_ERRORS_LISTED,
    MAX_EXACT_SHAPLEY_VARIABLES,
    MAX_HESSIAN_STEPS,
    MAX_MODEL_EVALUATIONS,
    MAX_ROWS,
    BackgroundBaseline,
    OutputTarget,
    RowBaseline,
    TabularAttributionParams,
)
from service.validation import InvalidRequest, invalid

# ----------------------------------------------------------------------------------- rows


def row_problems(
    rows: Sequence[Any], features: Sequence[Mapping[str, Any]], row_numbers: Sequence[int] | None = None
) -> list[tuple[int, str | None, str]]:
    """(row number, column or None, message) for every cell that cannot be encoded."""
    problems: list[tuple[int, str | None, str]] = []
    for position, row in enumerate(rows):
        number = row_numbers[position] if row_numbers is not None else position
        if not isinstance(row, Mapping):
            problems.append((number, None, f"row {number}: expected an object keyed by variable name"))
            continue
        for feature in features:
            problem = cell_problem(row.get(feature["name"]), feature)
            if problem is not None:
                problems.append((number, feature["name"], f"row {number}, column {feature['name']!r}: {problem}"))
    return problems


def rows_problem(loc: list[str | int], problems: list[tuple[int, str | None, str]], what: str) -> InvalidRequest:
    errors = [
        {"loc": [*loc, row, *([column] if column is not None else [])], "msg": msg, "type": "invalid-row"}
        for row, column, msg in problems[:MAX_ERRORS_LISTED]
    ]
    more = f" (and {len(problems) - MAX_ERRORS_LISTED} more)" if len(problems) > MAX_ERRORS_LISTED else ""
    detail = (
        f"{what} cannot be encoded with the model's feature manifest: "
        + "; ".join(msg for _, _, msg in problems[:5])
        + (f"; ... {len(problems)} problems in all" if len(problems) > 5 else "")
        + more
    )
    return InvalidRequest("invalid-rows", detail, errors)


def exact_shapley_message(variables: int, model: str) -> str:
    return (
        f"exact shapley enumerates all 2^M coalitions of the M variables; model {model!r} has {variables} "
        f"variables and the limit is {MAX_EXACT_SHAPLEY_VARIABLES}. Use kernel_shap or shapley_sampling."
    )


# ----------------------------------------------------------------------------------- records


def check_tabular_attribution(params: TabularAttributionParams, record: dict[str, Any]) -> None:
    features = tabular_features(record)
    if record.get("kind") != "tabular" or features is None:
        raise invalid(
            ["body", "model"],
            f"tabular_attribution needs a tabular model; {record.get('id')!r} is a {record.get('kind')} model",
            "wrong-model-kind",
        )
    variables = len(features)
    if params.method == "shapley" and variables > MAX_EXACT_SHAPLEY_VARIABLES:
        raise invalid(
            ["body", "params", "method"], exact_shapley_message(variables, record["id"]), "too-many-variables"
        )
    _check_interaction_params(params, [f["name"] for f in features])
    if params.rows is not None:
        problems = row_problems(params.rows, features)
        if problems:
            raise rows_problem(["body", "params", "rows"], problems, "rows")
    if isinstance(params.baseline, RowBaseline):
        problems = [
            (0, c, m.replace("row 0, ", "baseline row, ", 1))
            for _, c, m in row_problems([params.baseline.row], features)
        ]
        if problems:
            errors = [
                {"loc": ["body", "params", "baseline", "row", c], "msg": m, "type": "invalid-row"}
                for _, c, m in problems
            ]
            raise InvalidRequest("invalid-rows", "; ".join(m for _, _, m in problems), errors)
    _check_target(params, record)
    rows = len(params.rows) if params.rows is not None else len(params.indices or []) or params.sample
    if rows is not None:
        background = params.baseline.size if isinstance(params.baseline, BackgroundBaseline) else 1
        evaluations = estimated_evaluations(
            params.method, rows, background, variables, params.n_steps, params.n_samples
        )
        if evaluations > MAX_MODEL_EVALUATIONS:
            raise invalid(
                ["body", "params"],
                evaluation_limit_message(params.method, evaluations, rows, background),
                "limit-exceeded",
            )


def _check_interaction_params(params: TabularAttributionParams, variables: list[str]) -> None:
    """The params only the interaction methods take, and the ones they do not: each refused
    where it does not apply, naming what is allowed instead."""
    loc: list[str | int] = ["body", "params"]
    method, interactions = params.method, sorted(INTERACTION_METHODS)
    if params.index is not None and method != "shapley_interactions":
        raise invalid(
            [*loc, "index"],
            f"`index` ({', '.join(INTERACTION_INDICES)}) applies to method shapley_interactions only; "
            f"{method} takes none",
            "param-not-applicable",
        )
    if params.pair is not None and method not in INTERACTION_METHODS:
        raise invalid(
            [*loc, "pair"], f"`pair` applies to methods {', '.join(interactions)} only", "param-not-applicable"
        )
    if method not in INTERACTION_METHODS:
        return
    if len(variables) < 2:
        raise invalid([*loc, "method"], f"{method} needs at least two variables; the model has {len(variables)}")
    for position, name in enumerate(params.pair or []):
        if name not in variables:
            raise invalid(
                [*loc, "pair", position],
                f"unknown variable {name!r}; variables: {', '.join(variables)}",
                "unknown-variable",
            )
    if params.pair is not None and params.pair[0] == params.pair[1]:
        raise invalid([*loc, "pair"], "`pair` names one variable twice: give two different variables")
    if method == "integrated_hessians":
        if params.n_samples is not None:
            raise invalid(
                [*loc, "n_samples"],
                "integrated_hessians samples nothing: it takes `n_steps` (quadrature nodes on the path), not `n_samples`",
                "param-not-applicable",
            )
        if params.n_steps is not None and params.n_steps > MAX_HESSIAN_STEPS:
            raise invalid(
                [*loc, "n_steps"],
                f"integrated_hessians takes at most {MAX_HESSIAN_STEPS} steps (its Gauss rule is then exact for "
                f"polynomials of degree {2 * MAX_HESSIAN_STEPS - 1} along the path), not {params.n_steps}",
                "limit-exceeded",
            )
        return
    if params.n_steps is not None:
        raise invalid(
            [*loc, "n_steps"],
            "shapley_interactions has no path to integrate: it takes `n_samples` (the budget of coalitions "
            "of its sampled estimate), not `n_steps`",
            "param-not-applicable",
        )
    m, budget = len(variables), params.n_samples
    if budget is None or not interactions_sampled(m, budget):
        return
    least = minimum_interaction_budget(params.index or "k-SII", m)
    if budget < least:
        exact = f" (or at least 2^{m} = {2**m}: the exact values)" if m <= MAX_EXACT_SHAPLEY_VARIABLES else ""
        raise invalid(
            [*loc, "n_samples"],
            f"a budget of {budget} coalitions is too small for {params.index} on {m} variables: at least {least}{exact}",
            "limit-exceeded",
        )
    if m > MAX_EXACT_SHAPLEY_VARIABLES and budget >= 2**m:
        raise invalid(
            [*loc, "n_samples"],
            f"a budget of {budget} covers all 2^{m} coalitions, but exact interactions stop at "
            f"{MAX_EXACT_SHAPLEY_VARIABLES} variables: at most {2**m - 1}",
            "limit-exceeded",
        )


def _check_target(params: TabularAttributionParams, record: dict[str, Any]) -> None:
    target = params.target
    loc: list[str | int] = ["body", "params", "target"]
    if isinstance(target, OutputTarget):
        labels = record.get("labels")
        if target.label is not None:
            if not labels:
                raise invalid([*loc, "label"], f"model {record['id']!r} has no labels; give `index`", "no-labels")
            if target.label not in labels:
                raise invalid(
                    [*loc, "label"],
                    f"unknown label {target.label!r}; labels: {listed_categories(labels)}",
                    "unknown-label",
                )
        elif labels and target.index is not None and target.index >= len(labels):
            raise invalid(
                [*loc, "index"],
                f"output {target.index} is out of range: the model has {len(labels)} outputs",
                "unit-out-of-range",
            )
        return
    layer = find_layer(record, target.layer, [*loc, "layer"])
    if layer is None:
        return  # layers not recorded yet: the worker checks
    if target.unit >= int(layer["units"]):
        raise invalid(
            [*loc, "unit"],
            f"unit {target.unit} is out of range for layer {layer['name']!r}: valid units are 0 to {int(layer['units']) - 1}",
            "unit-out-of-range",
        )


def tabular_datasets(params: TabularAttributionParams) -> list[DatasetUse]:
    uses = []
    if params.dataset:
        uses.append(DatasetUse(("dataset",), params.dataset, "table", partial(_check_explained_dataset, params)))
    if isinstance(params.baseline, BackgroundBaseline):
        check = partial(_check_columns, ["body", "params", "baseline", "background"], every_row=False)
        uses.append(DatasetUse(("baseline", "background"), params.baseline.background, "table", check))
    return uses


def _check_explained_dataset(params: TabularAttributionParams, dataset: dict[str, Any], model: dict[str, Any]) -> None:
    """What the worker would find once it read the dataset, found from its record at submit:
    indices past its end, more rows than a job explains, columns the model's features cannot read."""
    count = int(dataset.get("count") or 0)
    for position, index in enumerate(params.indices or []):
        if index >= count:
            raise invalid(
                ["body", "params", "indices", position],
                f"row {index} is out of range: dataset {dataset['id']!r} has {count} rows (0 to {count - 1})",
                "index-out-of-range",
            )
    if params.indices is None and params.sample is None:
        if count > MAX_ROWS:
            raise invalid(
                ["body", "params", "dataset"],
                f"dataset {dataset['id']!r} has {count} rows; at most {MAX_ROWS} are explained per job: "
                "use `sample` or `indices`",
                "limit-exceeded",
            )
        features = tabular_features(model) or []
        background = params.baseline.size if isinstance(params.baseline, BackgroundBaseline) else 1
        evaluations = estimated_evaluations(
            params.method, count, background, len(features), params.n_steps, params.n_samples
        )
        if evaluations > MAX_MODEL_EVALUATIONS:
            raise invalid(
                ["body", "params"],
                evaluation_limit_message(params.method, evaluations, count, background),
                "limit-exceeded",
            )
    every_row = params.indices is None and (params.sample is None or params.sample >= count)
    _check_columns(["body", "params", "dataset"], dataset, model, every_row=every_row)


def _check_columns(loc: list[str | int], dataset: dict[str, Any], model: dict[str, Any], *, every_row: bool) -> None:
    features, columns = tabular_features(model), dataset.get("columns")
    if features is None or columns is None:
        return  # not a tabular model (refused by the kind's check), or a record without columns
    problems = table_problems(columns, features, int(dataset.get("count") or 0), every_row)
    if problems:
        raise invalid(
            loc,
            f"dataset {dataset['id']!r} cannot be read with model {model['id']!r}'s variables: "
            + "; ".join(problems)
            + f". The model needs: {', '.join(f['name'] for f in features)}",
            "incompatible-dataset",
        )
