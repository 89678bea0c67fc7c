"""What a `tabular_attribution` request may say: its limits, defaults, methods and params model.

Validation here needs nothing but the request; what needs the model's or a dataset's record is
in `service.kinds.tabular_checks`, what a job costs in `service.kinds.tabular_cost`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ----------------------------------------------------------------------------------- limits

MAX_ROWS = 10_000  # rows explained by one job
MAX_INLINE_ROWS = 1_000  # rows sent in the request body (use a dataset for more)
MAX_BACKGROUND = 1_000  # background rows of a {"background": ...} baseline
MAX_N_STEPS = 1_000
# integrated_hessians: quadrature nodes on the path (worker/core/attribution/integrated_hessians.py
# MAX_STEPS; a Gauss rule this long is exact for polynomials of degree 511 along the path).
MAX_HESSIAN_STEPS = 256
MAX_N_SAMPLES = 100_000
MAX_TOP_K = 100
# Exact Shapley enumerates all 2^M coalitions of the M variables (x the background rows).
MAX_EXACT_SHAPLEY_VARIABLES = 12
# Model rows evaluated by one job (forward passes x batch rows; a gradient pass counts as one).
MAX_MODEL_EVALUATIONS = 500_000_000
MAX_ERRORS_LISTED = 50

# A job that leaves `dataset_views` or `charts` unset makes them when it explains at least this
# many rows: explaining one prediction at a time (a few rows) pays for its attributions only.
AUTO_MIN_ROWS = 50

DEFAULT_N_STEPS = 100  # integrated_gradients
DEFAULT_HESSIAN_STEPS = 32  # integrated_hessians
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
    "shapley_interactions",
    "integrated_hessians",
]
METHODS: tuple[str, ...] = AttributionMethod.__args__  # type: ignore[attr-defined]
# Methods that give a main effect per variable and a value per pair of variables
# (worker/core/attribution/interactions.py, integrated_hessians.py) instead of one attribution
# per variable.
INTERACTION_METHODS = frozenset({"shapley_interactions", "integrated_hessians"})
# shapley_interactions' indices (k-SII: main effects plus pairs add up to f(x) - E f(b)).
InteractionIndex = Literal["k-SII", "STII", "FSII"]
INTERACTION_INDICES: tuple[str, ...] = InteractionIndex.__args__  # type: ignore[attr-defined]
DEFAULT_INTERACTION_INDEX = "k-SII"
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
    n_steps: int | None = Field(
        default=None,
        ge=1,
        le=MAX_N_STEPS,
        description=f"integrated_gradients: integration steps (default {DEFAULT_N_STEPS}); integrated_hessians: "
        f"quadrature nodes on the path (default {DEFAULT_HESSIAN_STEPS}, at most {MAX_HESSIAN_STEPS}).",
    )
    n_samples: int | None = Field(
        default=None,
        ge=1,
        le=MAX_N_SAMPLES,
        description="gradient_shap: samples per row (default 50); shapley_sampling: permutations "
        "(default 25); kernel_shap: coalitions (default 2M+2048, all of them when there are fewer); "
        "shapley_interactions: the budget of coalitions of the sampled estimate (default: all 2^M "
        "coalitions, exact, up to 12 variables; above that max(4096, 32 M^2)); a budget under 2^M "
        "samples, with a standard error per value.",
    )
    index: InteractionIndex | None = Field(
        default=None,
        description="shapley_interactions only: the interaction index, k-SII (default: main effects plus "
        "pairs add up to f(x) - E f(baseline)), STII (Shapley-Taylor) or FSII (Faith-Shap).",
    )
    pair: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="shapley_interactions and integrated_hessians: the pair of variables whose dataset "
        "view (mean interaction per pair of categories or quantile bins) and strongest rows are reported; "
        "default: the pair with the largest mean |interaction|.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seeds row sampling and the sampling methods.")
    top_k: int = Field(default=9, ge=1, le=MAX_TOP_K, description="Rows listed that activate the target most.")
    dataset_views: bool | None = Field(
        default=None,
        description="The views over the reference rows (every encodable row of `dataset`, or the inline "
        "rows): `top_rows`, the rows that activate the target most, and `maximizing_input`, the input "
        f"that maximizes it. true: computed; false: skipped; default: computed when the job explains at "
        f"least {AUTO_MIN_ROWS} rows. result.json's `skipped` names what was skipped and how to ask for it.",
    )
    charts: bool | None = Field(
        default=None,
        description="The PNG charts (importance.png, a waterfall per row up to 10 rows, summary.png from 10 "
        "rows; the interaction methods' interactions.png, pair_view.png and interactions_row_<index>.png). "
        f"true: drawn; false: not; default: drawn when the job explains at least {AUTO_MIN_ROWS} rows. "
        "result.json's `skipped` says when they were not.",
    )

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
        if self.method == "shapley_interactions" and self.index is None:
            self.index = DEFAULT_INTERACTION_INDEX  # resolved here, so the stored params name it
        return self


def made(asked: bool | None, rows: int) -> bool:
    """Whether a job makes an optional part of its result (`dataset_views`, `charts`): as asked,
    else when it explains at least AUTO_MIN_ROWS rows."""
    return asked if asked is not None else rows >= AUTO_MIN_ROWS
