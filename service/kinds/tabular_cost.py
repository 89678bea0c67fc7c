"""What a `tabular_attribution` job costs: the model evaluations of each method, and the estimate.

One count, `estimated_evaluations`, serves the submit-time limit, the worker's re-check and the
estimate shown before a job is sent.
"""

from __future__ import annotations

from typing import Any

from service.kinds.cost import Estimate, Rates, estimate, network
from service.kinds.tabular_cells import tabular_features
from service.kinds.tabular_params import (
    DEFAULT_GRADIENT_SHAP_SAMPLES,
    DEFAULT_SHAPLEY_SAMPLING_PERMUTATIONS,
    MAX_MODEL_EVALUATIONS,
    MAX_N_SAMPLES,
    BackgroundBaseline,
    TabularAttributionParams,
)


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


def tabular_attribution_cost(
    params: TabularAttributionParams, record: dict[str, Any], datasets: dict[str, dict[str, Any]]
) -> Estimate:
    """The method's model evaluations (`estimated_evaluations`, the same count the limit uses:
    building each input, and the model's forward pass), per-row bookkeeping, and the charts:
    importance, a waterfall per row up to 10 rows, a beeswarm from 10 rows on."""
    table = int(datasets[params.dataset].get("count") or 0) if params.dataset else 0
    rows = (
        len(params.rows) if params.rows is not None else len(params.indices or []) or min(params.sample or table, table)
    )
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
