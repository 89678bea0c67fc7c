"""The `tabular_attribution` job (handler `worker.kinds.tabular_attribution:run`): which
variables drive an output or a hidden neuron of a tabular model.

The data path, top to bottom: `rows` reads and checks the rows and resolves the baseline
(`encoded` keeps what a dataset's jobs share: its rows checked, encoded and summarized, per
worker and content); `compute` encodes them with the model's feature manifest and runs the
attribution method, then the top rows and the maximizing input (worker/core/attribution) into an
`AttributionResult`; `figures` draws the charts; `report` writes result.json, attributions.csv
and the summary. A job pays for what it asks: the dataset views (top rows, maximizing input) and
the charts are made when asked for (`dataset_views`, `charts`) or, by default, when the job
explains many rows (tabular_params.AUTO_MIN_ROWS); result.json's `skipped` names what was not
made. Artifacts:

- `attributions.csv`: one row per explained row (`index`, then one column per variable);
- `result.json`: variables, per-row attributions/output/baseline output/residual, global
  importance, warnings, the rows that activate the target most, the input that maximizes it,
  and the resolved parameters;
- when charts are drawn: `importance.png` (global importance bars), `waterfall_<index>.png` per
  row when there are at most 10 rows, and `summary.png` (a beeswarm of every row's attributions)
  from 10 rows on.

The interaction methods (shapley_interactions, integrated_hessians; `interactions` runs them,
`interaction_report` reads them) add `interactions.csv` (one line per row and pair) and
`main_effects.csv`, their fields of result.json, and draw `interactions.png`, `pair_view.png`
and `interactions_row_<index>.png` instead of the waterfalls and the beeswarm (see `figures`).
"""

from __future__ import annotations

import time

from service.kinds.tabular_params import TabularAttributionParams, made
from worker.artifacts import csv_artifact, json_artifact
from worker.context import JobContext, JobOutput
from worker.kinds.tabular_attribution import report
from worker.kinds.tabular_attribution.compute import attribute
from worker.kinds.tabular_attribution.figures import Charts, draw_charts
from worker.kinds.tabular_attribution.interaction_report import interaction_tables

__all__ = ["run"]


def run(ctx: JobContext, params: TabularAttributionParams) -> JobOutput:
    started = time.perf_counter()
    attribution = attribute(ctx, params)
    with ctx.stage("artifacts"):
        words = report.wording(attribution, params)
        drawn = made(params.charts, len(attribution.selection.rows))
        if drawn:
            ctx.progress(0.92, "drawing charts")
        charts = draw_charts(attribution, words, params) if drawn else Charts([])
        document, warnings = report.result_document(
            attribution, words, charts.notes, params, model=ctx.model, started=started, charts_drawn=drawn
        )
        header, rows = report.attribution_table(attribution)
        artifacts = [
            csv_artifact("attributions.csv", header, rows),
            *(
                csv_artifact(name, *table)
                for name, table in (interaction_tables(attribution) if attribution.interactions is not None else {}).items()
            ),
            json_artifact("result.json", document),
            *charts.artifacts,
        ]
    summary = report.summary(attribution, words, warnings, params, started=started)
    ctx.check()  # the finish records progress 1.0, "done"
    return JobOutput(summary=summary, artifacts=artifacts)
