"""The charts of a tabular attribution job (drawn by worker/core/attribution/charts.py):
importance.png always; waterfall_<row>.png per row up to MAX_WATERFALLS rows, where one chart
per row is still readable; summary.png (a beeswarm of every row) from MIN_SUMMARY_ROWS rows on,
where a distribution says more than single rows.

The interaction methods (interaction_charts.py) draw, instead of the waterfalls and the
beeswarm: interactions.png (mean |interaction| per pair, variables in importance order),
pair_view.png (the chosen pair's mean interaction per cell of its two variables) and
interactions_row_<row>.png (the first explained row's largest main effects and pairs, a
waterfall from the baseline output to its output). A per-variable waterfall or beeswarm would
split every pair evenly between its two variables and hide it, which is what these methods
are run to see; importance.png stays (per variable: main effect plus half of each pair, for
k-SII the Shapley values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.kinds.tabular_params import TabularAttributionParams
from worker.artifacts import png_artifact
from worker.context import ArtifactBlob
from worker.core.attribution.charts import beeswarm_png, beeswarm_sample, importance_png, waterfall_png
from worker.core.attribution.interaction_charts import interaction_matrix_png, pair_view_png, row_terms_png
from worker.core.attribution.interaction_result import global_main_effects
from worker.kinds.tabular_attribution.compute import AttributionResult
from worker.kinds.tabular_attribution.interaction_report import chosen_pair, interactions_of, pair_view
from worker.kinds.tabular_attribution.report import Wording
from worker.kinds.tabular_attribution.rows import user_values

MAX_WATERFALLS = 10  # a waterfall chart per row up to this many rows
MIN_SUMMARY_ROWS = 10  # a beeswarm summary from this many rows on


@dataclass
class Charts:
    artifacts: list[ArtifactBlob]
    notes: dict[str, Any] = field(default_factory=dict)  # result.json's `charts`: what a chart leaves out


def draw_charts(attribution: AttributionResult, words: Wording, params: TabularAttributionParams) -> Charts:
    subtitle = f"{words.target}\n{words.method}"
    short = words.target_short
    charts = Charts(
        [
            png_artifact(
                "importance.png",
                importance_png(
                    attribution.variables,
                    attribution.importance.tolist(),
                    title=f"What drives {short}: mean |attribution| per variable",
                    subtitle=subtitle,
                ),
            )  # fmt: skip
        ]
    )
    rows = attribution.selection.rows
    if attribution.interactions is not None:
        _add_interactions(charts, attribution, params, short, subtitle)
        return charts
    if len(rows) <= MAX_WATERFALLS:
        charts.artifacts.extend(_waterfalls(attribution, short, subtitle))
    if len(rows) >= MIN_SUMMARY_ROWS:
        _add_summary(charts, attribution, short, subtitle, params.seed)
    return charts


def _add_interactions(
    charts: Charts, attribution: AttributionResult, params: TabularAttributionParams, short: str, subtitle: str
) -> None:
    result, variables = interactions_of(attribution), attribution.variables
    if not len(result):
        return
    mean_abs = np.abs(result.interactions).mean(axis=0)
    order = np.argsort(-attribution.importance, kind="stable").tolist()
    charts.artifacts.append(
        png_artifact(
            "interactions.png",
            interaction_matrix_png(
                variables,
                mean_abs,
                global_main_effects(result.main_effects),
                order,
                title=f"Which variables act together on {short}: mean |interaction| per pair",
                subtitle=f"{subtitle}\nvariables in order of importance; over {len(result)} rows",
            ),
        )  # fmt: skip
    )
    a, b, why = chosen_pair(attribution, params)
    view = pair_view(attribution, (a, b))
    axes = view["axes"]
    charts.artifacts.append(
        png_artifact(
            "pair_view.png",
            pair_view_png(
                (variables[a], variables[b]),
                (axes[0]["bins"], axes[1]["bins"]),
                view["means"],
                view["counts"],
                title=f"Where {variables[a]} × {variables[b]} acts on {short}: mean interaction per cell",
                subtitle=f"{subtitle}\n{why}; red raises the target, blue lowers it; n = rows in the cell",
            ),
        )  # fmt: skip
    )
    number, features = attribution.selection.numbers[0], attribution.features
    background = attribution.baseline_rows > 1
    charts.artifacts.append(
        png_artifact(
            f"interactions_row_{number}.png",
            row_terms_png(
                variables,
                user_values(attribution.selection.rows[0], features),
                result.main_effects[0],
                result.interactions[0],
                output=float(result.outputs[0]),
                baseline_output=float(result.baseline_outputs[0]),
                title=f"Row {number}: the main effects and pairs that move {short} from the baseline",
                subtitle=subtitle,
                baseline_label="E[f(background)]" if background else "f(baseline)",
            ),
        )  # fmt: skip
    )
    charts.notes["interactions"] = {
        "interactions.png": "mean |interaction| per pair over every explained row; the diagonal names each "
        "variable's mean |main effect| (up to 10 variables)",
        "pair_view.png": {"pair": [variables[a], variables[b]], "chosen": why},
        f"interactions_row_{number}.png": "the first explained row: its main effects and pairs (each pair once), "
        "largest first, the rest merged; they add up to output - baseline_output",
        "left_out": "no waterfall per row and no beeswarm: they split each pair between its two variables",
    }


def _waterfalls(attribution: AttributionResult, short: str, subtitle: str) -> list[ArtifactBlob]:
    explanation, features = attribution.explanation, attribution.features
    background = attribution.baseline_rows > 1
    rows, numbers = attribution.selection.rows, attribution.selection.numbers
    return [
        png_artifact(
            f"waterfall_{number}.png",
            waterfall_png(
                attribution.variables,
                explanation.attributions[i].tolist(),
                user_values(rows[i], features),
                output=float(explanation.outputs[i]),
                baseline_output=float(explanation.baseline_outputs[i]),
                title=f"Row {number}: what moves {short} from the baseline",
                subtitle=subtitle,
                baseline_label="E[f(background)]" if background else "f(baseline)",
            ),
        )  # fmt: skip
        for i, number in enumerate(numbers)
    ]


def _add_summary(charts: Charts, attribution: AttributionResult, short: str, subtitle: str, seed: int) -> None:
    """summary.png: a seeded sample of the rows when there are too many dots to tell apart."""
    rows, features = attribution.selection.rows, attribution.features
    shown = beeswarm_sample(len(rows), seed)
    sampled = len(shown) < len(rows)
    sample_note = f"a random sample, seed {seed}"
    charts.notes["summary.png"] = {
        "rows_shown": len(shown),
        "rows": len(rows),
        "note": f"one dot per row; {len(shown)} of the {len(rows)} rows are drawn ({sample_note}), so that dots "
        "do not pile into blots; every row is in `rows` and attributions.csv"
        if sampled
        else "one dot per row, every row drawn",
    }
    # Dot colours: a numeric's rank among the rows (0 lowest, 1 highest), a categorical's category index.
    colours: list[list[float]] = []
    for f in features:
        name = f["name"]
        if f["type"] == "numeric":
            values = np.array([float(r[name]) for r in rows])
            ranks = values.argsort(kind="stable").argsort(kind="stable")
            colours.append((ranks / max(1, len(values) - 1))[shown].tolist())
        else:
            colours.append([f["categories"].index(user_values(rows[i], [f])[name]) for i in shown])
    charts.artifacts.append(
        png_artifact(
            "summary.png",
            beeswarm_png(
                attribution.variables,
                attribution.explanation.attributions[shown],
                colours,
                [f["type"] for f in features],
                [f.get("categories") for f in features],
                title=f"What drives {short}, row by row",
                subtitle=subtitle,
                total_rows=len(rows),
                sample_note=sample_note,
            ),
        )  # fmt: skip
    )
