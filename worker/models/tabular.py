"""Shared pieces for tabular models: the feature manifest, row encoding, and a small MLP.

Feature manifest (the ``input.tabular.features`` contract of a model manifest): a list of dicts,
one per variable, in the order the model sees them::

    {"name": "season", "type": "categorical", "categories": ["winter", "spring", ...]}
    {"name": "price", "type": "numeric", "mean": 21.6, "std": 7.8}

Encoding: a categorical variable becomes one column per category (one-hot, in the listed
category order); a numeric variable becomes one column, ``(value - mean) / std`` (mean 0 and
std 1 when the manifest leaves them out). :func:`encoded_columns` maps each encoded column back
to its variable, so attributions over the encoded columns can be summed per variable.

Pure numpy/torch: no pandas, no Redis, no HTTP.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from service.kinds.tabular_cells import category_key, is_missing, numeric_value

FEATURE_TYPES = ("numeric", "categorical")


def validate_features(features: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError if ``features`` is not a well-formed feature manifest."""
    if not isinstance(features, Sequence) or isinstance(features, (str, bytes)) or not features:
        raise ValueError("features must be a non-empty list of feature dicts")
    seen: set[str] = set()
    for i, feature in enumerate(features):
        if not isinstance(feature, Mapping):
            raise ValueError(f"feature {i} is not a dict")
        name = feature.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature {i} has no name")
        if name in seen:
            raise ValueError(f"feature {name!r} is listed twice")
        seen.add(name)
        kind = feature.get("type")
        if kind not in FEATURE_TYPES:
            raise ValueError(f"feature {name!r}: type must be 'numeric' or 'categorical', not {kind!r}")
        if kind == "categorical":
            categories = feature.get("categories")
            if (
                not isinstance(categories, Sequence)
                or isinstance(categories, (str, bytes))
                or not categories
                or not all(isinstance(c, str) for c in categories)
            ):
                raise ValueError(f"feature {name!r}: categories must be a non-empty list of strings")
            if len(set(categories)) != len(categories):
                raise ValueError(f"feature {name!r}: categories repeat")
        else:
            mean, std = feature.get("mean", 0.0), feature.get("std", 1.0)
            for key, value in (("mean", mean), ("std", std)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"feature {name!r}: {key} must be a finite number")
            if std <= 0:
                raise ValueError(f"feature {name!r}: std must be positive")


def encoded_width(features: Sequence[Mapping[str, Any]]) -> int:
    """Number of encoded columns (model inputs) for ``features``."""
    return sum(len(f["categories"]) if f["type"] == "categorical" else 1 for f in features)


def encoded_columns(features: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(variable name, column label)`` for each encoded column, in column order.

    Numeric columns are labelled with the variable name; one-hot columns ``"name=category"``.
    """
    columns: list[tuple[str, str]] = []
    for feature in features:
        name = feature["name"]
        if feature["type"] == "categorical":
            columns.extend((name, f"{name}={category}") for category in feature["categories"])
        else:
            columns.append((name, name))
    return columns


def variable_groups(features: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Variable name -> indices of its encoded columns (manifest order)."""
    groups: dict[str, list[int]] = {f["name"]: [] for f in features}
    for index, (name, _label) in enumerate(encoded_columns(features)):
        groups[name].append(index)
    return groups


def encode_rows(rows: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode rows (dicts keyed by variable name, user units) into a float32 matrix.

    Categoricals are one-hot in the listed category order; numerics are standardized with the
    manifest's mean/std. Numeric cells may be numbers or numeric strings (as read from CSV);
    categorical cells are category strings (integers match their decimal form). Keys not in the
    manifest (e.g. a target column) are ignored. Raises ValueError naming the row index and
    column for a missing value, an unknown category, or a non-numeric value in a numeric column.
    """
    validate_features(features)
    out = np.zeros((len(rows), encoded_width(features)), dtype=np.float32)
    for r, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {r}: expected a mapping of column name to value, got {type(row).__name__}")
        col = 0
        for feature in features:
            name = feature["name"]
            value = row.get(name)
            if is_missing(value):
                raise ValueError(f"row {r}, column {name!r}: missing value")
            if feature["type"] == "categorical":
                categories = feature["categories"]
                key = category_key(value)
                if key is None or key not in categories:
                    raise ValueError(
                        f"row {r}, column {name!r}: unknown category {value!r} "
                        f"(expected one of {list(categories)})"
                    )
                out[r, col + categories.index(key)] = 1.0
                col += len(categories)
            else:
                number = numeric_value(value)
                if number is None:
                    raise ValueError(f"row {r}, column {name!r}: expected a finite number, got {value!r}")
                mean = float(feature.get("mean", 0.0))
                std = float(feature.get("std", 1.0))
                out[r, col] = (number - mean) / std
                col += 1
    return out


def decode_matrix(matrix: np.ndarray, features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Inverse of :func:`encode_rows`: rows of user values (a categorical takes its argmax)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != encoded_width(features):
        raise ValueError(f"expected a matrix with {encoded_width(features)} columns, got shape {matrix.shape}")
    rows: list[dict[str, Any]] = [{} for _ in range(matrix.shape[0])]
    col = 0
    for feature in features:
        name = feature["name"]
        if feature["type"] == "categorical":
            categories = feature["categories"]
            picks = matrix[:, col : col + len(categories)].argmax(axis=1)
            for row, pick in zip(rows, picks):
                row[name] = categories[int(pick)]
            col += len(categories)
        else:
            values = matrix[:, col] * float(feature.get("std", 1.0)) + float(feature.get("mean", 0.0))
            for row, value in zip(rows, values):
                row[name] = float(value)
            col += 1
    return rows


def column_stats(rows: Sequence[Mapping[str, Any]], name: str) -> tuple[float, float]:
    """Mean and (population) standard deviation of a numeric column."""
    values = np.array([float(row[name]) for row in rows], dtype=np.float64)
    return float(values.mean()), float(values.std())


# --------------------------------------------------------------------------- CSV


def _format_cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write rows as CSV with a header row (values in user units, categories as strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format_cell(row[c]) for c in columns])


def read_csv(path: str | Path, features: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Read a CSV into row dicts. With ``features``, numeric variables become floats (cells that
    are not numbers stay strings, for :func:`encode_rows` to reject with their row/column);
    other columns stay strings."""
    numeric = {f["name"] for f in features or () if f["type"] == "numeric"}
    rows: list[dict[str, Any]] = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = dict(raw)
            for name in numeric & row.keys():
                number = numeric_value(row[name])
                if number is not None:
                    row[name] = number
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- model


class TabularMLP(nn.Module):
    """A plain MLP over encoded tabular inputs, with addressable layers.

    Layers, in forward order: ``hidden1``, ``act1``, ``hidden2``, ``act2``, ..., ``out``
    (``hiddenK`` is an ``nn.Linear``, ``actK`` its ``nn.ReLU``). Hidden neuron ``j`` of layer K
    is unit ``j`` of ``hiddenK`` (pre-activation) or ``actK`` (post-ReLU).
    """

    def __init__(self, n_inputs: int, n_outputs: int = 1, hidden: Sequence[int] = (64, 32)):
        super().__init__()
        if n_inputs < 1 or n_outputs < 1 or any(h < 1 for h in hidden):
            raise ValueError("layer sizes must be positive")
        self.n_inputs, self.n_outputs, self.hidden_sizes = int(n_inputs), int(n_outputs), tuple(int(h) for h in hidden)
        width = self.n_inputs
        for k, size in enumerate(self.hidden_sizes, start=1):
            self.add_module(f"hidden{k}", nn.Linear(width, size))
            self.add_module(f"act{k}", nn.ReLU())
            width = size
        self.out = nn.Linear(width, self.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, len(self.hidden_sizes) + 1):
            x = getattr(self, f"act{k}")(getattr(self, f"hidden{k}")(x))
        return self.out(x)

    def layer_names(self) -> list[str]:
        """Dotted names of the addressable layers, in forward order."""
        return [name for name, _ in self.named_children()]


def regression_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """R² and mean absolute error of a 1-D prediction."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    residual = float(((target - prediction) ** 2).sum())
    total = float(((target - target.mean()) ** 2).sum())
    return {"r2": 1.0 - residual / total if total > 0 else float("nan"), "mae": float(np.abs(target - prediction).mean())}


def predict(model: nn.Module, matrix: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Model output column 0 for an encoded matrix, as float64 numpy."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(matrix), batch_size):
            outputs.append(model(torch.from_numpy(np.ascontiguousarray(matrix[start : start + batch_size])))[:, 0])
    return torch.cat(outputs).double().numpy() if outputs else np.zeros(0)
