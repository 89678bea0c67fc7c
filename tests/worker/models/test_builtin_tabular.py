"""The built-in tabular models (retail-mlp, diabetes-mlp): encoding, data, shipped weights."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from worker.models import diabetes, retail
from worker.models.tabular import (
    TabularMLP,
    decode_matrix,
    encode_rows,
    encoded_columns,
    predict,
    read_csv,
    regression_metrics,
    variable_groups,
)

MODELS = Path(__file__).resolve().parents[3] / "worker" / "models"
WEIGHTS, DATA = MODELS / "weights", MODELS / "data"

FEATURES = [
    {"name": "color", "type": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "size", "type": "numeric", "mean": 10.0, "std": 2.0},
    {"name": "code", "type": "categorical", "categories": ["1", "2"]},
]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(2)


# --------------------------------------------------------------------------- encoding


def test_encode_rows_layout_and_round_trip():
    rows = [
        {"color": "green", "size": 14.0, "code": "2", "ignored": "x"},
        {"color": "red", "size": "7", "code": 1},  # numeric string; integer category code
    ]
    x = encode_rows(rows, FEATURES)
    assert x.dtype == np.float32 and x.shape == (2, 6)
    np.testing.assert_array_equal(x[0], [0, 1, 0, 2.0, 0, 1])
    np.testing.assert_array_equal(x[1], [1, 0, 0, -1.5, 1, 0])
    back = decode_matrix(x, FEATURES)
    assert back == [{"color": "green", "size": 14.0, "code": "2"}, {"color": "red", "size": 7.0, "code": "1"}]
    np.testing.assert_array_equal(encode_rows(back, FEATURES), x)


def test_encoded_columns_map_back_to_variables():
    assert encoded_columns(FEATURES) == [
        ("color", "color=red"), ("color", "color=green"), ("color", "color=blue"),
        ("size", "size"), ("code", "code=1"), ("code", "code=2"),
    ]
    assert variable_groups(FEATURES) == {"color": [0, 1, 2], "size": [3], "code": [4, 5]}
    assert len(encoded_columns(retail.RETAIL_FEATURES)) == 6 + 4 + 4 + 3 + 2 + 2 + 1 == 22


@pytest.mark.parametrize(
    "bad, column, words",
    [
        ({"color": "purple"}, "color", "unknown category"),
        ({"code": "3"}, "code", "unknown category"),
        ({"code": 1.5}, "code", "unknown category"),
        ({"color": None}, "color", "missing"),
        ({"size": ""}, "size", "missing"),
        ({"size": float("nan")}, "size", "missing"),
        ({"size": "large"}, "size", "number"),
        ({"size": True}, "size", "number"),
        ({"size": [1.0]}, "size", "number"),
        ({"size": float("inf")}, "size", "number"),
    ],
)
def test_encode_rows_errors_name_row_and_column(bad, column, words):
    good = {"color": "red", "size": 1.0, "code": "1"}
    with pytest.raises(ValueError) as caught:
        encode_rows([good, {**good, **bad}], FEATURES)
    message = str(caught.value)
    assert "row 1" in message and repr(column) in message and words in message


def test_encode_rows_missing_key():
    with pytest.raises(ValueError, match=r"row 0, column 'size': missing value"):
        encode_rows([{"color": "red", "code": "1"}], FEATURES)


def test_tabular_mlp_layers_are_addressable():
    model = TabularMLP(22, 1, (64, 32))
    assert model.layer_names() == ["hidden1", "act1", "hidden2", "act2", "out"]
    assert isinstance(model.get_submodule("act2"), torch.nn.ReLU)
    assert model.hidden2.out_features == 32 and model.out.out_features == 1
    assert model(torch.zeros(3, 22)).shape == (3, 1)


# --------------------------------------------------------------------------- retail process


@pytest.fixture(scope="module")
def retail_rows():
    return retail.generate_retail(20000, retail.TRAIN_SEED)


def test_generator_is_deterministic():
    first = retail.generate_retail(300, 11)
    assert first == retail.generate_retail(300, 11)
    assert first != retail.generate_retail(300, 12)
    assert list(first[0]) == retail.RETAIL_COLUMNS
    assert all(isinstance(row[retail.RETAIL_TARGET], int) and row[retail.RETAIL_TARGET] >= 0 for row in first)


def test_manifest_stats_match_training_rows(retail_rows):
    for feature in retail.RETAIL_FEATURES:
        if feature["type"] == "numeric":
            values = np.array([row[feature["name"]] for row in retail_rows])
            assert abs(values.mean() - feature["mean"]) < 0.03 * values.std()
            assert abs(values.std() - feature["std"]) < 0.03 * values.std()
    encode_rows(retail_rows[:500], retail.RETAIL_FEATURES)  # every generated value is valid


def _group_means(rows, name, values):
    y = retail.retail_target(rows)
    column = np.array([row[name] for row in rows])
    return {v: (y[column == v].mean(), y[column == v].std() / math.sqrt((column == v).sum())) for v in values}


def test_promotion_lifts_sales_as_documented(retail_rows):
    # otherwise-identical rows: exactly log(1.65) more expected log sales
    flipped = [dict(row, promotion="yes") for row in retail_rows[:1000]]
    base = [dict(row, promotion="no") for row in retail_rows[:1000]]
    np.testing.assert_allclose(retail.retail_log_mean(flipped) - retail.retail_log_mean(base), math.log(1.65))
    # in the data (promotion is independent of everything else), the same uplift, +-0.05
    means = _group_means(retail_rows, "promotion", ["yes", "no"])
    assert means["yes"][0] - means["no"][0] == pytest.approx(math.log(1.65), abs=0.05)


def test_region_has_no_effect(retail_rows):
    changed = [dict(row, region="north") for row in retail_rows[:1000]]
    np.testing.assert_array_equal(retail.retail_log_mean(changed), retail.retail_log_mean(retail_rows[:1000]))
    means = _group_means(retail_rows, "region", retail.REGIONS)
    spread = max(m for m, _ in means.values()) - min(m for m, _ in means.values())
    standard_error = max(se for _, se in means.values())
    assert spread < 4 * standard_error  # the difference of two means is ~1.4 SE; no signal beyond noise
    # versus a real effect: promotion's gap is >10x the region spread
    assert spread < 0.1 * math.log(1.65)


def test_seasonal_categories_and_holiday_toys(retail_rows):
    y = retail.retail_target(retail_rows)

    def mean(**match):
        mask = np.array([all(row[k] == v for k, v in match.items()) for row in retail_rows])
        return y[mask].mean()

    assert mean(item_category="garden", season="summer") > mean(item_category="garden", season="winter") + 0.8
    assert mean(item_category="apparel", season="winter") > mean(item_category="apparel", season="summer") + 0.4
    assert abs(mean(item_category="grocery", season="summer") - mean(item_category="grocery", season="winter")) < 0.1
    toys_uplift = mean(item_category="toys", holiday_week="yes") - mean(item_category="toys", holiday_week="no")
    assert toys_uplift == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("category", ["grocery", "electronics", "apparel"])
def test_price_elasticity_differs_by_category(retail_rows, category):
    rows = [row for row in retail_rows if row["item_category"] == category]
    log_price = np.log([row["price"] for row in rows])
    slope = np.polyfit(log_price, retail.retail_target(rows), 1)[0]
    assert slope == pytest.approx(-retail.ELASTICITY[category], abs=0.15)


def test_documented_driver_order_holds_for_the_process(retail_rows):
    names = [f["name"] for f in retail.RETAIL_FEATURES]
    importance = retail.permutation_importance(retail.retail_log_mean, retail_rows[:5000], names)
    ranked = sorted(names, key=lambda n: -importance[n])
    assert ranked == [*retail.RETAIL_DOCUMENTED_DRIVERS, *retail.RETAIL_IRRELEVANT]
    assert importance["region"] == 0.0


# --------------------------------------------------------------------------- shipped models


def _load(model_id: str) -> tuple[TabularMLP, dict]:
    report = json.loads((WEIGHTS / f"{model_id}.json").read_text())
    model = TabularMLP(report["n_inputs"], report["n_outputs"], report["hidden_sizes"])
    model.load_state_dict(load_file(str(WEIGHTS / f"{model_id}.safetensors")), strict=True)
    return model.eval(), report


def test_retail_weights_reproduce_report():
    model, report = _load(retail.MODEL_ID)
    assert report["features"] == retail.RETAIL_FEATURES
    assert report["n_inputs"] == len(encoded_columns(retail.RETAIL_FEATURES))
    assert report["output"]["index"] == 0 and "log1p(weekly_sales)" in report["output"]["meaning"]
    assert report["layers"] == model.layer_names()
    rows = retail.generate_retail(report["data"]["test"]["rows"], report["data"]["test"]["seed"])
    prediction = predict(model, encode_rows(rows, retail.RETAIL_FEATURES))
    metrics = regression_metrics(prediction, retail.retail_target(rows))
    assert metrics["r2"] == pytest.approx(report["metrics"]["test"]["r2"], abs=1e-4)
    assert metrics["mae"] == pytest.approx(report["metrics"]["test"]["mae"], abs=1e-4)
    assert metrics["r2"] >= 0.9
    # the fitted model ranks the variables like the process (top drivers; region last)
    learned = report["permutation_importance_test"]["model"]
    ranked = sorted(learned, key=lambda n: -learned[n])
    assert ranked[:4] == retail.RETAIL_DOCUMENTED_DRIVERS[:4] and ranked[-1] == "region"


def test_diabetes_weights_reproduce_report():
    model, report = _load(diabetes.MODEL_ID)
    assert report["features"] == diabetes.DIABETES_FEATURES
    assert report["output"]["index"] == 0 and "progression" in report["output"]["meaning"]
    rows = diabetes.load_diabetes_rows()
    train, validation, test = diabetes.diabetes_split()
    assert (len(train), len(validation), len(test)) == (287, 66, 89)
    assert not set(train) & set(test) and not set(validation) & set(test)
    for name, indices in (("train", train), ("test", test)):
        subset = [rows[i] for i in indices]
        prediction = predict(model, encode_rows(subset, diabetes.DIABETES_FEATURES))
        metrics = regression_metrics(prediction, diabetes.diabetes_target(subset))
        assert metrics["r2"] == pytest.approx(report["metrics"][name]["r2"], abs=1e-4)
        assert metrics["mae"] == pytest.approx(report["metrics"][name]["mae"], abs=1e-3)
    assert 0.3 <= report["metrics"]["test"]["r2"] <= 0.7


# --------------------------------------------------------------------------- built-in CSVs


def _header_and_count(path: Path) -> tuple[list[str], int]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        return next(reader), sum(1 for _ in reader)


def test_retail_sample_csv():
    path = DATA / "retail-sample.csv"
    assert _header_and_count(path) == (retail.RETAIL_COLUMNS, retail.SAMPLE_COUNT)
    rows = read_csv(path, retail.RETAIL_FEATURES)
    encode_rows(rows, retail.RETAIL_FEATURES)
    expected = retail.generate_retail(retail.SAMPLE_COUNT, retail.SAMPLE_SEED)
    for got, want in zip(rows, expected):
        assert {k: got[k] for k in retail.RETAIL_COLUMNS[:-1]} == {k: want[k] for k in retail.RETAIL_COLUMNS[:-1]}
        assert int(got[retail.RETAIL_TARGET]) == want[retail.RETAIL_TARGET]


def test_diabetes_csv():
    path = DATA / "diabetes.csv"
    assert _header_and_count(path) == (diabetes.DIABETES_COLUMNS, 442)
    rows = read_csv(path, diabetes.DIABETES_FEATURES)
    x = encode_rows(rows, diabetes.DIABETES_FEATURES)
    np.testing.assert_array_equal(x, encode_rows(diabetes.load_diabetes_rows(), diabetes.DIABETES_FEATURES))
    assert {row["sex"] for row in rows} == {"1", "2"}
    np.testing.assert_array_equal(
        [float(row["progression"]) for row in rows], diabetes.diabetes_target(diabetes.load_diabetes_rows())
    )
