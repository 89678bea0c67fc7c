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
    DEFAULT_HESSIAN_STEPS,
    DEFAULT_N_STEPS,
    DEFAULT_SHAPLEY_SAMPLING_PERMUTATIONS,
    INTERACTION_METHODS,
    MAX_EXACT_SHAPLEY_VARIABLES,
    MAX_MODEL_EVALUATIONS,
    MAX_N_SAMPLES,
    BackgroundBaseline,
    TabularAttributionParams,
    made,
)


def resolved_n_steps(method: str, n_steps: int | None) -> int | None:
    """The steps a method takes along its path (None for methods without one)."""
    if method == "integrated_gradients":
        return n_steps or DEFAULT_N_STEPS
    if method == "integrated_hessians":
        return n_steps or DEFAULT_HESSIAN_STEPS
    return None


# shapley_interactions' budget rules: the same numbers as worker/core/attribution/
# interactions_sampled.py (default_budget, minimum_budget), repeated here because the service
# does not import torch; tests/worker/test_interaction_limits.py holds them equal.
def default_interaction_budget(variables: int) -> int:
    """Coalitions of the sampled estimate when `n_samples` is not given: about 32 permutations."""
    return max(4096, 32 * variables * variables)


def minimum_interaction_budget(index: str, variables: int) -> int:
    """The fewest coalitions a sampled estimate takes: two permutations (k-SII, STII: a spread
    needs two samples), or one more coalition than FSII's unknowns, in complementary pairs."""
    if index == "FSII":
        return 2 * (variables + variables * (variables - 1) // 2) + 2
    return variables * variables + 1 + max(1, variables * variables - 2 * variables - 1)


def interactions_sampled(variables: int, n_samples: int | None) -> bool:
    """Sampled above MAX_EXACT_SHAPLEY_VARIABLES, or when a budget under 2^M is asked."""
    return variables > MAX_EXACT_SHAPLEY_VARIABLES or (n_samples is not None and n_samples < 2 ** min(variables, 62))


def interaction_coalitions(variables: int, n_samples: int | None) -> int:
    """Coalitions whose values shapley_interactions evaluates (per explained row and background
    row): all 2^M when exact; at most the budget when sampled (the core draws until the next
    permutation or kernel draw would pass it)."""
    if not interactions_sampled(variables, n_samples):
        return 2**variables
    return n_samples or default_interaction_budget(variables)


def resolved_n_samples(method: str, n_samples: int | None, variables: int) -> int | None:
    """The sample count a method uses (None for methods that take none; shapley_interactions:
    its budget when sampled, None when exact)."""
    if method == "shapley_interactions":
        return interaction_coalitions(variables, n_samples) if interactions_sampled(variables, n_samples) else None
    if method == "gradient_shap":
        return n_samples or DEFAULT_GRADIENT_SHAP_SAMPLES
    if method == "shapley_sampling":
        return n_samples or DEFAULT_SHAPLEY_SAMPLING_PERMUTATIONS
    if method == "kernel_shap":
        all_coalitions = 2**variables - 2 if variables < 60 else MAX_N_SAMPLES
        return min(n_samples or 2 * variables + 2048, max(all_coalitions, 1))
    return None


def estimated_evaluations(
    method: str, rows: int, background: int, variables: int, n_steps: int | None, n_samples: int | None
) -> int:
    """Model rows evaluated to explain `rows` rows against `background` baseline rows (a
    gradient pass with its forward counts as one). Integrated Hessians, per path point and
    background row: one gradient pass, then one Hessian-vector product (a double backward) per
    variable, the loop of worker/core/attribution/integrated_hessians.py. Not counted, as for
    every method: the rows' own outputs f(x) and the baseline rows' E f(b)."""
    samples = resolved_n_samples(method, n_samples, variables) or 1
    steps = resolved_n_steps(method, n_steps) or 1
    per_row = {
        "integrated_gradients": background * steps,
        "deeplift": 2 * background,
        "gradient_shap": samples,
        "saliency": 1,
        "input_x_gradient": 1,
        "feature_ablation": background * (variables + 1),
        "shapley_sampling": background * samples * (variables + 1),
        "kernel_shap": background * (samples + 2),
        "shapley": background * 2 ** min(variables, 62),
        "shapley_interactions": background * interaction_coalitions(variables, n_samples),
        "integrated_hessians": background * steps * (variables + 1),
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
    building each input, and the model's forward pass), per-row bookkeeping, the dataset views
    when the job makes them (`dataset_views`, the kind's fixed part), and the charts when it draws
    them (`charts`): importance, a waterfall per row up to 10 rows, a beeswarm from 10 rows on
    (the interaction methods: importance, the pair matrix, the pair view and one row's chart)."""
    table = int(datasets[params.dataset].get("count") or 0) if params.dataset else 0
    rows = (
        len(params.rows) if params.rows is not None else len(params.indices or []) or min(params.sample or table, table)
    )
    background = params.baseline.size if isinstance(params.baseline, BackgroundBaseline) else 1
    variables = len(tabular_features(record) or [])
    evaluations = estimated_evaluations(params.method, rows, background, variables, params.n_steps, params.n_samples)
    if not made(params.charts, rows):
        charts = 0
    elif params.method in INTERACTION_METHODS:
        charts = 4  # importance, the pair matrix, the pair view, one row's terms
    else:
        charts = 1 + (rows if rows <= 10 else 0) + (1 if rows >= 10 else 0)
    net = network(record)

    def work(rates: Rates) -> float:
        per_row = max(1, evaluations // max(1, rows))
        return (
            rates.job
            + (rates.tabular_job if made(params.dataset_views, rows) else 0.0)
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
