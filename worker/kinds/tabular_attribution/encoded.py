"""A table read against one feature manifest, and what the jobs on it share: which rows can be
encoded (and why not), the encodable rows (the reference rows of the mean baseline, the top rows
and the observed domain), their encoding, their mean row and their observed domain.

Each part is computed on first use only, so that a job explaining rows picked by index checks
and encodes those rows and no more. For a dataset the whole is kept by the worker with the
table, per feature manifest (worker/datasets.py `Table.derived`): the next job on the same
content and manifest finds what the previous ones computed. A new upload under the same id is
another content, computed afresh.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from service.kinds.tabular_checks import row_problems
from worker.context import JobContext, JobFailed
from worker.core.attribution.extremes import Domain, observed_domain
from worker.models.tabular import encode_rows, encoded_width

Features = Sequence[Mapping[str, Any]]  # the model's feature manifest (input.tabular.features)
Problem = tuple[int, str | None, str]  # (row number, column or None, message): service/kinds/tabular_checks.py


class EncodedTable:
    """`rows` (a dataset's, or the inline rows of one job) against `features`."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], features: Features):
        self.rows = rows
        self.features = features

    def problems(self, numbers: Sequence[int]) -> list[Problem]:
        """The problems of the rows numbered `numbers`, in that order: read off the whole table's
        check once it has been made (or when they are a good part of the table: the whole check
        is then made, for the reference rows to use), else checked here, those rows only."""
        if "_problems_by_row" in self.__dict__ or 4 * len(numbers) >= len(self.rows):
            return [problem for number in numbers for problem in self._problems_by_row.get(number, [])]
        return row_problems([self.rows[n] for n in numbers], self.features, numbers)

    @cached_property
    def _problems_by_row(self) -> dict[int, list[Problem]]:
        found: dict[int, list[Problem]] = {}
        for problem in row_problems(self.rows, self.features, range(len(self.rows))):
            found.setdefault(problem[0], []).append(problem)
        return found

    @cached_property
    def reference_numbers(self) -> list[int]:
        """The numbers of the rows that can be encoded."""
        return [n for n in range(len(self.rows)) if n not in self._problems_by_row]

    @cached_property
    def reference(self) -> list[Mapping[str, Any]]:
        return [self.rows[n] for n in self.reference_numbers]

    @property
    def bad_numbers(self) -> list[int]:
        """The numbers of the rows that cannot be encoded (the whole table is checked)."""
        return sorted(self._problems_by_row)

    @cached_property
    def encoded_reference(self) -> np.ndarray:
        """[len(reference), encoded width] float32: the reference rows as the model sees them
        (encode_rows works row by row: row i is what encoding reference[i] alone gives). Shared
        by the jobs on this table: read only."""
        if not self.reference:
            return np.zeros((0, encoded_width(self.features)), dtype=np.float32)
        return encode_rows(self.reference, self.features)

    def encode(self, positions: Sequence[int]) -> np.ndarray:
        """The reference rows at `positions` (in `reference`), encoded: taken from the whole
        encoding once it has been made, else encoding those rows only (the same numbers)."""
        if "encoded_reference" in self.__dict__:
            return self.encoded_reference[list(positions)]
        return encode_rows([self.reference[p] for p in positions], self.features)

    @cached_property
    def mean_row(self) -> dict[str, Any]:
        """The mean baseline's row over the reference rows (`mean_row`)."""
        return mean_row(self.reference, self.features)

    @cached_property
    def domain(self) -> Domain:
        """Each variable's observed range or categories over the reference rows."""
        return observed_domain(self.features, self.reference)


def dataset_table(ctx: JobContext, dataset: str, features: Features) -> EncodedTable:
    """A CSV dataset against `features`, kept with the worker's copy of the table (per content and
    manifest), once it is known to hold a column for every variable of the model."""
    table = ctx.datasets.table_view(ctx.tenant, dataset)
    rows = table.rows
    missing = [f["name"] for f in features if rows and f["name"] not in rows[0]]
    if missing:
        raise JobFailed(
            "invalid-rows", f"Dataset {dataset!r} lacks variables of the model",
            f"missing columns: {', '.join(missing)}; the model needs {', '.join(f['name'] for f in features)}",
        )  # fmt: skip
    key = ("tabular_attribution.encoded", json.dumps(list(features), sort_keys=True))
    return table.derived(key, lambda rows: EncodedTable(rows, features))


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
