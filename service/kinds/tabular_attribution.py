"""`tabular_attribution`: which variables drive an output or a hidden neuron of a tabular model.

The request names rows (from a CSV dataset, or inline), a target (a model output, or a hidden
neuron), a method and a baseline. Everything is reported in the user's variables: a
categorical that the model sees one-hot is one variable, never a set of columns.

This module is imported by the API: no torch here. It holds the params model, the limits, a
torch-free validator of rows against a model's feature manifest (the same rules as
`worker.models.tabular.encode_rows`), and the submit-time `check`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.jobspec import DatasetUse, JobKind
from service.kinds.cost import Estimate, Rates, estimate, network
from service.kinds.layers import find_layer
from service.kinds.tabular_cells import cell_problem, listed_categories, table_problems
from service.validation import InvalidRequest, invalid

# ----------------------------------------------------------------------------------- limits

MAX_ROWS = 10_000  # rows explained by one job
MAX_INLINE_ROWS = 1_000  # rows sent in the request body (use a dataset for more)
MAX_BACKGROUND = 1_000  # background rows of a {"background": ...} baseline
MAX_N_STEPS = 1_000
MAX_N_SAMPLES = 100_000
MAX_TOP_K = 100
# Exact Shapley enumerates all 2^M coalitions of the M variables (x the background rows).
MAX_EXACT_SHAPLEY_VARIABLES = 12
# Model rows evaluated by one job (forward passes x batch rows; a gradient pass counts as one).
MAX_MODEL_EVALUATIONS = 500_000_000
MAX_ERRORS_LISTED = 50

DEFAULT_N_STEPS = 100
DEFAULT_BACKGROUND_SIZE = 100
# Defaults of the sampling methods; kernel_shap follows the shap package's "auto":
# 2M + 2048 coalitions, which enumerates all of them (exact Shapley) up to 11 variables.
DEFAULT_GRADIENT_SHAP_SAMPLES = 50
DEFAULT_SHAPLEY_SAMPLING_PERMUTATIONS = 25

AttributionMethod = Literal[
    "integrated_gradients",
    "deeplift",
    "gradient_shap",
    "saliency",
    "input_x_gradient",
    "feature_ablation",
    "shapley_sampling",
    "kernel_shap",
    "shapley",
]
METHODS: tuple[str, ...] = AttributionMethod.__args__  # type: ignore[attr-defined]
# Methods whose attributions add up to output - baseline output (exactly, in expectation, or
# up to the integration error): a large residual is worth a warning for these only.
# Methods that ignore the baseline (they read the gradient at the input only).
BASELINE_FREE_METHODS = frozenset({"saliency", "input_x_gradient"})


# ----------------------------------------------------------------------------------- params


class OutputTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["output"] = "output"
    index: int | None = Field(default=None, ge=0, description="Output column (default 0).")
    label: str | None = Field(default=None, min_length=1, description="An output by label (models with labels).")

    @model_validator(mode="after")
    def _one(self) -> OutputTarget:
        if self.index is not None and self.label is not None:
            raise ValueError("give `index` or `label`, not both")
        return self


class NeuronTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["neuron"]
    layer: str = Field(min_length=1, description="A layer name as listed by GET /v1/models/{id}.")
    unit: int = Field(ge=0, description="The unit (feature) of that layer.")


class RowBaseline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row: dict[str, Any] = Field(description="One row keyed by variable name, in user units.")


class BackgroundBaseline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    background: str = Field(min_length=1, max_length=200, description="A CSV dataset id.")
    size: int = Field(
        default=DEFAULT_BACKGROUND_SIZE,
        ge=1,
        le=MAX_BACKGROUND,
        description="Background rows drawn (with `seed`) from the dataset; all of them if it has fewer.",
    )


Target = Annotated[OutputTarget | NeuronTarget, Field(discriminator="type")]
Baseline = Literal["zeros", "mean"] | RowBaseline | BackgroundBaseline


class TabularAttributionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(
        default=None, min_length=1, max_length=200, description="A CSV dataset id whose rows are explained."
    )
    indices: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ROWS,
        description="With `dataset`: the rows to explain (0-based, in file order).",
    )
    sample: int | None = Field(
        default=None, ge=1, le=MAX_ROWS, description="With `dataset`: explain this many rows drawn with `seed`."
    )
    rows: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INLINE_ROWS,
        description="Rows to explain, each keyed by variable name (user units; categories as strings).",
    )
    target: Target = Field(
        default_factory=OutputTarget,
        description='{"type": "output", "index": i} (or "label"), or {"type": "neuron", "layer", "unit"}.',
    )
    method: AttributionMethod = "integrated_gradients"
    baseline: Baseline = Field(
        default="mean",
        description='"zeros" (all zeros in the encoded space: numerics at their manifest mean, no '
        'category), "mean" (mean of each numeric, most frequent category, over the dataset, or '
        'over the inline rows), {"row": {...}}, or {"background": dataset, "size": n} (the '
        "expected attribution over a background sample, the SHAP convention).",
    )
    n_steps: int = Field(
        default=DEFAULT_N_STEPS, ge=1, le=MAX_N_STEPS, description="integrated_gradients: integration steps."
    )
    n_samples: int | None = Field(
        default=None,
        ge=1,
        le=MAX_N_SAMPLES,
        description="gradient_shap: samples per row (default 50); shapley_sampling: permutations "
        "(default 25); kernel_shap: coalitions (default 2M+2048, all of them when there are fewer).",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seeds row sampling and the sampling methods.")
    top_k: int = Field(default=9, ge=1, le=MAX_TOP_K, description="Rows listed that activate the target most.")

    @model_validator(mode="after")
    def _one_source(self) -> TabularAttributionParams:
        if (self.dataset is None) == (self.rows is None):
            raise ValueError("give exactly one of `dataset` or `rows`")
        if self.dataset is None and (self.indices is not None or self.sample is not None):
            raise ValueError("`indices` and `sample` pick rows of `dataset`")
        if self.indices is not None and self.sample is not None:
            raise ValueError("give `indices` or `sample`, not both")
        if self.indices is not None and len(set(self.indices)) != len(self.indices):
            raise ValueError("`indices` repeats a row")
        return self


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
        {"loc": [*loc, row, *( [column] if column is not None else [])], "msg": msg, "type": "invalid-row"}
        for row, column, msg in problems[:MAX_ERRORS_LISTED]
    ]
    more = f" (and {len(problems) - MAX_ERRORS_LISTED} more)" if len(problems) > MAX_ERRORS_LISTED else ""
    detail = f"{what} cannot be encoded with the model's feature manifest: " + "; ".join(
        msg for _, _, msg in problems[:5]
    ) + (f"; ... {len(problems)} problems in all" if len(problems) > 5 else "") + more
    return InvalidRequest("invalid-rows", detail, errors)


# ----------------------------------------------------------------------------------- cost


def resolved_n_samples(method: str, n_samples: int | None, variables: int) -> int | None:
    """The sample count a method uses (None for methods that take none)."""
    if method == "gradient_shap":
        return n_samples or DEFAULT_GRADIENT_SHAP_SAMPLES
    if method == "shapley_sampling":
        return n_samples or DEFAULT_SHAPLEY_SAMPLING_PERMUTATIONS
    if method == "kernel_shap":
        all_coalitions = 2**variables - 2 if variables < 60 else MAX_N_SAMPLES
        return min(n_samples or 2 * variables + 2048, max(all_coalitions, 1))
    return None


def estimated_evaluations(
    method: str, rows: int, background: int, variables: int, n_steps: int, n_samples: int | None
) -> int:
    """Model rows evaluated to explain `rows` rows against `background` baseline rows."""
    samples = resolved_n_samples(method, n_samples, variables) or 1
    per_row = {
        "integrated_gradients": background * n_steps,
        "deeplift": 2 * background,
        "gradient_shap": samples,
        "saliency": 1,
        "input_x_gradient": 1,
        "feature_ablation": background * (variables + 1),
        "shapley_sampling": background * samples * (variables + 1),
        "kernel_shap": background * (samples + 2),
        "shapley": background * 2 ** min(variables, 62),
    }[method]
    return rows * per_row


def evaluation_limit_message(method: str, evaluations: int, rows: int, background: int) -> str:
    return (
        f"{method} on {rows} rows with {background} baseline rows would evaluate the model on about "
        f"{evaluations:,} inputs; the limit is {MAX_MODEL_EVALUATIONS:,}. Explain fewer rows (`sample`), "
        "use a smaller background (`size`), fewer `n_samples`/`n_steps`, or a cheaper method."
    )


def exact_shapley_message(variables: int, model: str) -> str:
    return (
        f"exact shapley enumerates all 2^M coalitions of the M variables; model {model!r} has {variables} "
        f"variables and the limit is {MAX_EXACT_SHAPLEY_VARIABLES}. Use kernel_shap or shapley_sampling."
    )


# ----------------------------------------------------------------------------------- check


def tabular_features(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    contract = record.get("input") or {}
    tabular = contract.get("tabular") if isinstance(contract, Mapping) else None
    if not isinstance(tabular, Mapping):
        return None
    return list(tabular.get("features") or []) or None


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
        raise invalid(["body", "params", "method"], exact_shapley_message(variables, record["id"]), "too-many-variables")
    if params.rows is not None:
        problems = row_problems(params.rows, features)
        if problems:
            raise rows_problem(["body", "params", "rows"], problems, "rows")
    if isinstance(params.baseline, RowBaseline):
        problems = [(0, c, m.replace("row 0, ", "baseline row, ", 1)) for _, c, m in row_problems([params.baseline.row], features)]
        if problems:
            errors = [{"loc": ["body", "params", "baseline", "row", c], "msg": m, "type": "invalid-row"} for _, c, m in problems]
            raise InvalidRequest("invalid-rows", "; ".join(m for _, _, m in problems), errors)
    _check_target(params, record)
    rows = len(params.rows) if params.rows is not None else len(params.indices or []) or params.sample
    if rows is not None:
        background = params.baseline.size if isinstance(params.baseline, BackgroundBaseline) else 1
        evaluations = estimated_evaluations(params.method, rows, background, variables, params.n_steps, params.n_samples)
        if evaluations > MAX_MODEL_EVALUATIONS:
            raise invalid(
                ["body", "params"], evaluation_limit_message(params.method, evaluations, rows, background), "limit-exceeded"
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
                raise invalid([*loc, "label"], f"unknown label {target.label!r}; labels: {listed_categories(labels)}", "unknown-label")
        elif labels and target.index is not None and target.index >= len(labels):
            raise invalid(
                [*loc, "index"], f"output {target.index} is out of range: the model has {len(labels)} outputs", "unit-out-of-range"
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
        evaluations = estimated_evaluations(params.method, count, background, len(features), params.n_steps, params.n_samples)
        if evaluations > MAX_MODEL_EVALUATIONS:
            raise invalid(
                ["body", "params"], evaluation_limit_message(params.method, evaluations, count, background), "limit-exceeded"
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


def tabular_attribution_cost(
    params: TabularAttributionParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]
) -> Estimate:
    """The method's model evaluations (`estimated_evaluations`, the same count the limit uses:
    building each input, and the model's forward pass), per-row bookkeeping, and the charts:
    importance, a waterfall per row up to 10 rows, a beeswarm from 10 rows on."""
    table = int(datasets[params.dataset].get("count") or 0) if params.dataset else 0
    rows = len(params.rows) if params.rows is not None else len(params.indices or []) or min(params.sample or table, table)
    background = params.baseline.size if isinstance(params.baseline, BackgroundBaseline) else 1
    variables = len(tabular_features(record) or [])
    evaluations = estimated_evaluations(params.method, rows, background, variables, params.n_steps, params.n_samples)
    charts = 1 + (rows if rows <= 10 else 0) + (1 if rows >= 10 else 0)
    net = network(record)

    def work(rates: Rates) -> float:
        per_row = max(1, evaluations // max(1, rows))
        return (
            rates.job
            + rates.tabular_job
            + rows * rates.tabular_row
            + evaluations * rates.evaluation
            + net.forward(rates, evaluations, per_row)
            + charts * rates.chart
        )

    return estimate(
        work,
        f"{params.method} on {rows} rows: about {evaluations:,} model evaluations ({net.describe()}), "
        f"and {charts} charts",
    )


JOB_KINDS = [
    JobKind(
        name="tabular_attribution",
        params_model=TabularAttributionParams,
        handler="worker.kinds.tabular_attribution:run",
        description="Which variables of a tabular model push an output or a hidden neuron up or down, "
        "per row and over a dataset: integrated gradients, DeepLift, gradient SHAP, saliency, "
        "input x gradient, feature ablation, Shapley value sampling, KernelSHAP, and exact Shapley "
        f"(up to {MAX_EXACT_SHAPLEY_VARIABLES} variables). Categorical variables are reported as one "
        "variable. Also the rows that activate the target most and the input that maximizes it.",
        check=check_tabular_attribution,
        cost=tabular_attribution_cost,
        datasets=tabular_datasets,
    )
]
