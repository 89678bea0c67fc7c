"""The rows a tabular attribution job explains and the baseline it explains them against.

The rows come inline or from a CSV dataset (all of it, a seeded sample, or listed indices).
Every row is checked against the model's feature manifest before the model sees it, so a bad
cell fails the job naming its row and column. The reference rows (every encodable row of the
dataset, or the inline rows) give the mean baseline, the top rows and the observed domain; a
dataset's are checked, encoded and summarized once per worker and content (`encoded`), and only
when the job uses them: explaining rows picked by index reads those rows and no more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from service.kinds.tabular_checks import row_problems
from service.kinds.tabular_params import MAX_ROWS, BackgroundBaseline, RowBaseline, TabularAttributionParams
from worker.context import JobContext, JobFailed
from worker.kinds.tabular_attribution.encoded import EncodedTable, dataset_table, mean_row, user_values
from worker.models.tabular import encode_rows

__all__ = ["Baseline", "RowSelection", "mean_row", "resolve_baseline", "select_rows", "user_values"]

Features = Sequence[Mapping[str, Any]]  # the model's feature manifest (input.tabular.features)


@dataclass
class RowSelection:
    rows: list[Mapping[str, Any]]  # the rows explained, in user units
    numbers: list[int]  # each one's row number (in the dataset, or among the inline rows)
    table: EncodedTable  # the dataset's rows, or the inline rows, against the model's manifest
    origin: str  # where the reference rows come from: "dataset 'x'", or "the N inline rows"
    inline: bool
    warnings: list[str] = field(default_factory=list)
    _told_bad_rows: bool = field(default=False, repr=False)

    def reference(self) -> EncodedTable:
        """The reference rows (every encodable row of the dataset, or the inline rows) and what
        is derived from them; the first use checks the whole dataset and warns of the rows left out."""
        bad = self.table.bad_numbers
        if bad and not self._told_bad_rows:
            self._told_bad_rows = True
            self.warnings.append(
                f"{len(bad)} rows of {self.origin} cannot be encoded (first: row {bad[0]}) and are left out "
                "of the mean baseline, the top rows and the observed domain"
            )
        return self.table

    @property
    def source(self) -> str:
        """The reference rows in words (reads them)."""
        return self.origin if self.inline else f"{self.origin} ({len(self.reference().reference)} rows)"


@dataclass
class Baseline:
    rows: torch.Tensor  # [B, encoded width]: one row, or a background sample
    info: dict[str, Any]  # result.json's `baseline`: what it is and where it comes from
    warnings: list[str] = field(default_factory=list)


def select_rows(ctx: JobContext, params: TabularAttributionParams, features: Features) -> RowSelection:
    if params.rows is not None:
        problems = row_problems(params.rows, features)
        if problems:
            raise JobFailed("invalid-rows", "Rows cannot be encoded", "; ".join(m for _, _, m in problems[:10]))
        numbers = list(range(len(params.rows)))
        inline = EncodedTable(params.rows, features)
        return RowSelection(list(params.rows), numbers, inline, f"the {len(params.rows)} inline rows", inline=True)
    table = dataset_table(ctx, params.dataset, features)
    count = len(table.rows)
    warnings: list[str] = []
    if params.indices is not None:
        for position, index in enumerate(params.indices):
            if index >= count:
                raise JobFailed(
                    "invalid-params", "Row index out of range",
                    f"indices[{position}] = {index}: dataset {params.dataset!r} has {count} rows (0 to {count - 1})",
                )  # fmt: skip
        numbers = list(params.indices)
    elif params.sample is not None:
        size = min(params.sample, count)
        if size < params.sample:
            warnings.append(
                f"sample = {params.sample} but dataset {params.dataset!r} has {count} rows: all are explained"
            )
        numbers = sorted(np.random.default_rng(params.seed).choice(count, size, replace=False).tolist())
    else:
        if count > MAX_ROWS:
            raise JobFailed(
                "limit-exceeded", "Too many rows",
                f"dataset {params.dataset!r} has {count} rows; at most {MAX_ROWS} are explained per job: use `sample` or `indices`",
            )  # fmt: skip
        numbers = list(range(count))
    rows = [table.rows[i] for i in numbers]
    problems = table.problems(numbers)
    if problems:
        raise JobFailed(
            "invalid-rows", f"Rows of dataset {params.dataset!r} cannot be encoded",
            "; ".join(m for _, _, m in problems[:10]) + (f"; ... {len(problems)} problems in all" if len(problems) > 10 else ""),
        )  # fmt: skip
    return RowSelection(rows, numbers, table, f"dataset {params.dataset!r}", inline=False, warnings=warnings)


def resolve_baseline(
    ctx: JobContext, params: TabularAttributionParams, features: Features, selection: RowSelection
) -> Baseline:
    """The baseline as encoded rows: all zeros, the reference rows' mean, one given row, or a
    seeded sample of a background dataset (the SHAP convention)."""
    baseline = params.baseline
    width = sum(len(f["categories"]) if f["type"] == "categorical" else 1 for f in features)
    if baseline == "zeros":
        row = {f["name"]: (float(f.get("mean", 0.0)) if f["type"] == "numeric" else None) for f in features}
        info = {
            "type": "zeros",
            "row": row,
            "note": "all zeros in the encoded space: each numeric at its manifest mean, and no category "
            "of a categorical (all its one-hot columns 0), which no real row has",
        }
        return Baseline(torch.zeros(1, width), info)
    if baseline == "mean":
        row = selection.reference().mean_row
        info = {
            "type": "mean",
            "row": row,
            "source": selection.source,
            "note": "mean of each numeric, most frequent category of each categorical",
        }
        return Baseline(torch.from_numpy(encode_rows([row], features)), info)
    if isinstance(baseline, RowBaseline):
        problems = row_problems([baseline.row], features)
        if problems:
            raise JobFailed("invalid-rows", "The baseline row cannot be encoded", "; ".join(m for _, _, m in problems))
        info = {"type": "row", "row": user_values(baseline.row, features)}
        return Baseline(torch.from_numpy(encode_rows([baseline.row], features)), info)
    assert isinstance(baseline, BackgroundBaseline)
    table = dataset_table(ctx, baseline.background, features)
    valid, numbers, bad = table.reference, table.reference_numbers, table.bad_numbers
    if not valid:
        raise JobFailed("invalid-rows", "No background row can be encoded", f"dataset {baseline.background!r}")
    warnings = []
    if bad:
        warnings.append(
            f"{len(bad)} rows of background dataset {baseline.background!r} cannot be encoded and were skipped"
        )
    size = min(baseline.size, len(valid))
    picks = sorted(np.random.default_rng([params.seed, 1]).choice(len(valid), size, replace=False).tolist())
    info = {
        "type": "background",
        "dataset": baseline.background,
        "size": size,
        "indices": [numbers[p] for p in picks],
        "note": "attributions are the expectation over the background rows (the SHAP convention); "
        "baseline_output is the mean output over them",
    }
    return Baseline(torch.from_numpy(table.encode(picks)), info, warnings)
