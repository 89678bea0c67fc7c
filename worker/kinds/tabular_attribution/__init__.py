"""The `tabular_attribution` job (handler `worker.kinds.tabular_attribution:run`): which
variables drive an output or a hidden neuron of a tabular model.

The data path, top to bottom: `rows` reads and checks the rows and resolves the baseline;
`compute` encodes them with the model's feature manifest and runs the attribution method, the
top rows and the maximizing input (worker/core/attribution) into an `AttributionResult`; `figures`
draws the charts; `report` writes result.json, attributions.csv and the summary. Artifacts:

- `attributions.csv`: one row per explained row (`index`, then one column per variable);
- `result.json`: variables, per-row attributions/output/baseline output/residual, global
  importance, warnings, the rows that activate the target most, the input that maximizes it,
  and the resolved parameters;
- `importance.png` (global importance bars), `waterfall_<index>.png` per row when there are at
  most 10 rows, and `summary.png` (a beeswarm of every row's attributions) from 10 rows on.

The interaction methods (shapley_interactions, integrated_hessians; `interactions` runs them,
`interaction_report` reads them) add `interactions.csv` (one line per row and pair) and
`main_effects.csv`, their fields of result.json, and draw `interactions.png`, `pair_view.png`
and `interactions_row_<index>.png` instead of the waterfalls and the beeswarm (see `figures`).
"""

from __future__ import annotations

import time

from service.kinds.tabular_params import TabularAttributionParams
from worker.artifacts import csv_artifact, json_artifact
from worker.context import JobContext, JobOutput
from worker.kinds.tabular_attribution import report
from worker.kinds.tabular_attribution.compute import attribute
from worker.kinds.tabular_attribution.figures import draw_charts
from worker.kinds.tabular_attribution.interaction_report import interaction_tables

__all__ = ["run"]


def run(ctx: JobContext, params: TabularAttributionParams) -> JobOutput:
    started = time.perf_counter()
    attribution = attribute(ctx, params)
    ctx.progress(0.92, "drawing charts")
    words = report.wording(attribution, params)
    charts = draw_charts(attribution, words, params)
    document, warnings = report.result_document(
        attribution, words, charts.notes, params, model=ctx.model, started=started
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
    ctx.progress(1.0, "done", force=True)
    return JobOutput(summary=summary, artifacts=artifacts)
