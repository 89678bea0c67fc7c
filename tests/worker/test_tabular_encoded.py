"""A table against a feature manifest (worker/kinds/tabular_attribution/encoded.py), whose parts
jobs on the same dataset share: each computed when first asked for gives what computing it
directly from the rows gives, whatever was computed before it."""

from __future__ import annotations

import numpy as np

from service.kinds.tabular_checks import row_problems
from worker.kinds.tabular_attribution.encoded import EncodedTable, mean_row
from worker.models.builtin import DATA
from worker.models.retail import RETAIL_FEATURES
from worker.models.tabular import encode_rows, read_csv

ROWS = read_csv(DATA / "retail-sample.csv")[:400]
BAD = {3: {"season": "monsoon"}, 10: {"price": "cheap"}, 11: {"region": ""}}
TABLE = [{**row, **BAD.get(number, {})} for number, row in enumerate(ROWS)]


def test_each_part_is_what_the_rows_give_whatever_was_asked_first():
    good = [n for n in range(len(TABLE)) if n not in BAD]
    numbers = [10, 5, 3, 399]
    for first in ("problems", "encode", "reference", "mean"):
        table = EncodedTable(TABLE, RETAIL_FEATURES)
        if first == "problems":
            assert table.problems(numbers) == row_problems([TABLE[n] for n in numbers], RETAIL_FEATURES, numbers)
        elif first == "encode":
            assert np.array_equal(table.encode([0, 7]), encode_rows([TABLE[good[0]], TABLE[good[7]]], RETAIL_FEATURES))
        elif first == "mean":
            assert table.mean_row == mean_row([TABLE[n] for n in good], RETAIL_FEATURES)
        assert table.reference_numbers == good and table.bad_numbers == sorted(BAD)
        assert np.array_equal(table.encoded_reference, encode_rows([TABLE[n] for n in good], RETAIL_FEATURES))
        # once the whole table is checked and encoded, the parts come from there and agree
        assert table.problems(numbers) == row_problems([TABLE[n] for n in numbers], RETAIL_FEATURES, numbers)
        assert [p[:2] for p in table.problems(numbers)] == [(10, "price"), (3, "season")]
        assert np.array_equal(table.encode([0, 7]), encode_rows([TABLE[good[0]], TABLE[good[7]]], RETAIL_FEATURES))
        assert table.mean_row == mean_row([TABLE[n] for n in good], RETAIL_FEATURES)
        assert table.domain.categories["season"] == sorted(
            {r["season"] for r in (TABLE[n] for n in good)}, key=RETAIL_FEATURES[1]["categories"].index
        )
