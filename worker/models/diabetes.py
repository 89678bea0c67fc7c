"""``diabetes-mlp``: a model of a real dataset, the diabetes data that ships with scikit-learn.

Source: ``sklearn.datasets.load_diabetes(scaled=False)`` (Efron, Hastie, Johnstone and
Tibshirani, "Least Angle Regression", Annals of Statistics 2004): 442 diabetes patients, ten
baseline variables in their original units, and a quantitative measure of disease progression
one year after baseline. The file is inside the scikit-learn package; nothing is downloaded.

Variables (in manifest order)
    age   numeric, years
    sex   categorical, "1" or "2": the dataset's own two codes as strings. The source does not
          say which code is which sex, so neither does this module.
    bmi   numeric, body mass index (kg/m²)
    bp    numeric, average blood pressure (mmHg)
    s1    numeric, tc: total serum cholesterol (mg/dL)
    s2    numeric, ldl: low-density lipoproteins (mg/dL)
    s3    numeric, hdl: high-density lipoproteins (mg/dL)
    s4    numeric, tch: total cholesterol / HDL ratio
    s5    numeric, ltg: log of serum triglycerides level
    s6    numeric, glu: blood sugar level (mg/dL)
Target
    progression   disease progression one year after baseline (25 to 346 in the data)

Split (deterministic, :func:`diabetes_split`): the row indices 0..441 shuffled by
``numpy.random.default_rng(0)``; the first 89 (20 %) are the test rows, the next 66 (15 %) the
validation rows (early stopping), the remaining 287 the training rows. The manifest's
means/stds are those of the training rows.

The model ``diabetes-mlp`` predicts the progression in its own units: output 0 is the
predicted disease progression one year after baseline (the training standardization is
folded into the output layer). Published linear models reach R² of about 0.5 on this data;
an MLP does no better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

MODEL_ID = "diabetes-mlp"
DIABETES_TARGET = "progression"
DIABETES_OUTPUT_MEANING = "predicted disease progression one year after baseline (the dataset's target units)"
DIABETES_VARIABLES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
DIABETES_COLUMNS = [*DIABETES_VARIABLES, DIABETES_TARGET]
SEX_CATEGORIES = ["1", "2"]
SPLIT_SEED = 0
TEST_COUNT, VALIDATION_COUNT = 89, 66

# Means/stds of the training rows (diabetes_split()[0]), rounded; train_tabular checks them.
DIABETES_FEATURES: list[dict[str, Any]] = [
    {"name": "age", "type": "numeric", "mean": 49.1, "std": 13.1},
    {"name": "sex", "type": "categorical", "categories": list(SEX_CATEGORIES)},
    {"name": "bmi", "type": "numeric", "mean": 26.45, "std": 4.4},
    {"name": "bp", "type": "numeric", "mean": 95.3, "std": 13.4},
    {"name": "s1", "type": "numeric", "mean": 190.7, "std": 34.7},
    {"name": "s2", "type": "numeric", "mean": 116.5, "std": 30.7},
    {"name": "s3", "type": "numeric", "mean": 49.6, "std": 13.5},
    {"name": "s4", "type": "numeric", "mean": 4.12, "std": 1.24},
    {"name": "s5", "type": "numeric", "mean": 4.67, "std": 0.515},
    {"name": "s6", "type": "numeric", "mean": 92.3, "std": 11.1},
]


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    if list(data.feature_names) != DIABETES_VARIABLES:
        raise RuntimeError(f"unexpected diabetes columns {data.feature_names}")
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.float64)


def load_diabetes_rows() -> list[dict[str, Any]]:
    """All 442 patients as dicts (user units; ``sex`` as "1"/"2"; target ``progression``)."""
    features, target = _raw()
    rows = []
    for values, progression in zip(features, target):
        row: dict[str, Any] = {}
        for name, value in zip(DIABETES_VARIABLES, values):
            row[name] = str(int(value)) if name == "sex" else float(value)
        row[DIABETES_TARGET] = float(progression)
        rows.append(row)
    return rows


def diabetes_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices ``(train, validation, test)`` of :func:`load_diabetes_rows`, deterministic."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(_raw()[1]))
    test = np.sort(order[:TEST_COUNT])
    validation = np.sort(order[TEST_COUNT : TEST_COUNT + VALIDATION_COUNT])
    train = np.sort(order[TEST_COUNT + VALIDATION_COUNT :])
    return train, validation, test


def diabetes_target(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The model's target for rows: ``progression`` as is."""
    return np.array([float(row[DIABETES_TARGET]) for row in rows], dtype=np.float64)
