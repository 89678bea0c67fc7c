"""The rows a tabular attribution job explains and the baseline it explains them against.

The rows come inline or from a CSV dataset (all of it, a seeded sample, or listed indices).
Every row is checked against the model's feature manifest before the model sees it, so a bad
cell fails the job naming its row and column. The reference rows (every encodable row of the
dataset, or the inline rows) give the mean baseline, the top rows and the observed domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from service.kinds.tabular_checks import row_problems
from service.kinds.tabular_params import MAX_ROWS, BackgroundBaseline, RowBaseline, TabularAttributionParams
from worker.context import JobContext, JobFailed
from worker.models.tabular import encode_rows

Features = Sequence[Mapping[str, Any]]  # the model's feature manifest (input.tabular.features)


@dataclass
class RowSelection:
    rows: list[Mapping[str, Any]]  # the rows explained, in user units
    numbers: list[int]  # each one's row number (in the dataset, or among the inline rows)
    reference: list[Mapping[str, Any]]  # the rows the mean baseline, top rows and domain come from
    reference_numbers: list[int]
    source: str  # where the reference rows come from, in words
    warnings: list[str] = field(default_factory=list)


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
        return RowSelection(
            list(params.rows), numbers, list(params.rows), numbers, f"the {len(params.rows)} inline rows"
        )
    table = table_rows(ctx, params.dataset, features)
    count = len(table)
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
    rows = [table[i] for i in numbers]
    problems = row_problems(rows, features, numbers)
    if problems:
        raise JobFailed(
            "invalid-rows", f"Rows of dataset {params.dataset!r} cannot be encoded",
            "; ".join(m for _, _, m in problems[:10]) + (f"; ... {len(problems)} problems in all" if len(problems) > 10 else ""),
        )  # fmt: skip
    reference, reference_numbers, bad = encodable_rows(table, list(range(count)), features)
    if bad:
        warnings.append(
            f"{len(bad)} rows of dataset {params.dataset!r} cannot be encoded (first: row {bad[0]}) and are left out "
            "of the mean baseline, the top rows and the observed domain"
        )
    source = f"dataset {params.dataset!r} ({len(reference)} rows)"
    return RowSelection(rows, numbers, reference, reference_numbers, source, warnings)


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
        row = mean_row(selection.reference, features)
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
    table = table_rows(ctx, baseline.background, features)
    valid, numbers, bad = encodable_rows(table, list(range(len(table))), features)
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
    return Baseline(torch.from_numpy(encode_rows([valid[p] for p in picks], features)), info, warnings)


def table_rows(ctx: JobContext, dataset: str, features: Features) -> list[dict[str, Any]]:
    """A CSV dataset's rows, once it is known to hold a column for every variable of the model."""
    table = ctx.datasets.table(ctx.tenant, dataset)
    missing = [f["name"] for f in features if table and f["name"] not in table[0]]
    if missing:
        raise JobFailed(
            "invalid-rows", f"Dataset {dataset!r} lacks variables of the model",
            f"missing columns: {', '.join(missing)}; the model needs {', '.join(f['name'] for f in features)}",
        )  # fmt: skip
    return table


def encodable_rows(
    rows: Sequence[Mapping[str, Any]], numbers: Sequence[int], features: Features
) -> tuple[list[Mapping[str, Any]], list[int], list[int]]:
    """(the rows that can be encoded, their numbers, the numbers of those that cannot)."""
    bad = {row for row, _, _ in row_problems(rows, features, numbers)}
    keep = [i for i, n in enumerate(numbers) if n not in bad]
    return [rows[i] for i in keep], [numbers[i] for i in keep], sorted(bad)


def user_values(row: Mapping[str, Any], features: Features) -> dict[str, Any]:
    """A row as result.json shows it: numerics as floats, categories as their text ("3", not 3.0)."""
    out: dict[str, Any] = {}
    for f in features:
        value = row.get(f["name"])
        if f["type"] == "numeric":
            out[f["name"]] = float(value)
        else:
            out[f["name"]] = (
                str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
            )
    return out


def mean_row(rows: Sequence[Mapping[str, Any]], features: Features) -> dict[str, Any]:
    """The mean of each numeric and the most frequent category of each categorical (ties go to
    the category listed first in the manifest)."""
    row: dict[str, Any] = {}
    for f in features:
        name = f["name"]
        if f["type"] == "numeric":
            row[name] = float(np.mean([float(r[name]) for r in rows]))
        else:
            counts = Counter(user_values(r, [f])[name] for r in rows)
            row[name] = max(f["categories"], key=lambda c: (counts.get(c, 0), -f["categories"].index(c)))
    return row
