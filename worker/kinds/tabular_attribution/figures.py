"""The charts of a tabular attribution job (drawn by worker/core/attribution/charts.py):
importance.png always; waterfall_<row>.png per row up to MAX_WATERFALLS rows, where one chart
per row is still readable; summary.png (a beeswarm of every row) from MIN_SUMMARY_ROWS rows on,
where a distribution says more than single rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.artifacts import png_artifact
from worker.context import ArtifactBlob
from worker.core.attribution.charts import beeswarm_png, beeswarm_sample, importance_png, waterfall_png
from worker.kinds.tabular_attribution.compute import AttributionResult
from worker.kinds.tabular_attribution.report import Wording
from worker.kinds.tabular_attribution.rows import user_values

MAX_WATERFALLS = 10  # a waterfall chart per row up to this many rows
MIN_SUMMARY_ROWS = 10  # a beeswarm summary from this many rows on


@dataclass
class Charts:
    artifacts: list[ArtifactBlob]
    notes: dict[str, Any] = field(default_factory=dict)  # result.json's `charts`: what a chart leaves out


def draw_charts(attribution: AttributionResult, words: Wording, *, seed: int) -> Charts:
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
    if len(rows) <= MAX_WATERFALLS:
        charts.artifacts.extend(_waterfalls(attribution, short, subtitle))
    if len(rows) >= MIN_SUMMARY_ROWS:
        _add_summary(charts, attribution, short, subtitle, seed)
    return charts


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
