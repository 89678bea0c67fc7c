"""The interaction charts read without the JSON and repeat byte for byte (artifacts are compared
by sha256 across retries): the pair matrix, a pair's dataset view, one row's terms."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from worker.core.attribution.interaction_charts import interaction_matrix_png, pair_view_png, row_terms_png

VARIABLES = ["item_category", "season", "region", "price"]


def draw_all() -> list[bytes]:
    rng = np.random.default_rng(0)
    pairs = rng.random((4, 4))
    pairs = (pairs + pairs.T) / 2
    np.fill_diagonal(pairs, 0)
    means = np.array([[0.3, -0.2, np.nan], [0.0, 0.1, -0.4]])
    counts = np.array([[3, 2, 0], [1, 5, 4]])
    row_pairs = np.zeros((4, 4))
    row_pairs[0, 1] = row_pairs[1, 0] = 0.5
    return [
        interaction_matrix_png(VARIABLES, pairs, [0.6, 0.1, 0.01, 0.5], [0, 3, 1, 2], title="pairs", subtitle="method"),
        pair_view_png(
            ("item_category", "season"),
            (["garden", "toys"], ["winter", "spring", "summer"]),
            means,
            counts,
            title="view",
            subtitle="method",
        ),  # fmt: skip
        row_terms_png(
            VARIABLES,
            {"item_category": "garden", "season": "spring", "region": "north", "price": 9.5},
            [0.4, 0.2, 0.0, -0.3],
            row_pairs,
            output=3.0,
            baseline_output=2.2,
            title="row",
        ),  # fmt: skip
    ]


def test_interaction_charts_are_pngs_that_repeat_byte_for_byte():
    first, second = draw_all(), draw_all()
    assert first == second
    for data in first:
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width >= 700 and image.height >= 250
