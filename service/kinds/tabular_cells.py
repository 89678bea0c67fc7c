"""How a cell of a tabular row is read, shared by the API (submit-time checks, no torch) and the
worker (encoding): one set of rules, so a row the API accepts always encodes. Also where a
model's catalog record keeps its feature manifest (`tabular_features`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    return isinstance(value, numbers.Real) and not _is_bool(value) and math.isnan(float(value))


def category_key(value: Any) -> str | None:
    """The category a cell names: strings as given, integers (and integral floats) in decimal
    (so 1 or 1.0 match the category "1"); anything else None."""
    if isinstance(value, str):
        return value
    if _is_bool(value):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        return str(int(value))
    return None


def numeric_value(value: Any) -> float | None:
    """A finite float from a number or a numeric string; None for anything else."""
    if _is_bool(value):
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def listed_categories(categories: Sequence[str]) -> str:
    shown = list(categories[:20])
    more = f" ... ({len(categories)} in all)" if len(categories) > 20 else ""
    return f"{shown}{more}"


def cell_problem(value: Any, feature: Mapping[str, Any]) -> str | None:
    """Why a cell cannot be encoded for `feature`, or None."""
    if is_missing(value):
        return "missing value"
    if feature["type"] == "categorical":
        key = category_key(value)
        if key is None or key not in feature["categories"]:
            return f"unknown category {value!r} (expected one of {listed_categories(feature['categories'])})"
        return None
    if numeric_value(value) is None:
        return f"expected a finite number, got {value!r}"
    return None


def table_problems(
    columns: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, Any]], rows: int, every_row: bool
) -> list[str]:
    """What in a CSV dataset's columns fails a job that reads it with `features` (see column_problem)."""
    by_name = {column["name"]: column for column in columns}
    absent = [f["name"] for f in features if f["name"] not in by_name]
    problems = [f"missing columns: {', '.join(absent)}"] if absent else []
    for feature in features:
        if feature["name"] in by_name:
            problem = column_problem(by_name[feature["name"]], feature, rows, every_row)
            if problem is not None:
                problems.append(f"column {feature['name']!r}: {problem}")
    return problems


def column_problem(column: Mapping[str, Any], feature: Mapping[str, Any], rows: int, every_row: bool) -> str | None:
    """Why a CSV column (as service.uploads.check_csv described it: type, missing cells, and the
    categories of a categorical column up to 50) fails a job that reads it as `feature`, or None.

    A job fails on a row that cannot be encoded; with `every_row` false (the job reads chosen rows,
    or skips bad ones) only a column that no row can be read from is a certain failure."""
    missing = int(column.get("missing") or 0)
    if missing >= rows:
        return "every value is missing"
    if missing and every_row:
        return f"{missing} of its {rows} values are missing"
    listed = column.get("categories")
    if feature["type"] == "numeric":
        if column.get("type") != "categorical":
            return None
        bad = [v for v in listed or [] if numeric_value(v) is None]
        if listed is not None and len(bad) == len(listed):
            return f"holds no numbers ({listed_categories(bad)}); the model reads it as numeric"
        if every_row:
            shown = f": {listed_categories(bad)}" if listed is not None else ""
            return f"holds values that are not numbers{shown}; the model reads it as numeric"
        return None
    if listed is None:
        return None  # a numeric column, or too many distinct values to know them here
    unknown = [v for v in listed if category_key(v) not in feature["categories"]]
    if not unknown or (len(unknown) < len(listed) and not every_row):
        return None
    which = "none of its values is" if len(unknown) == len(listed) else "it holds values that are not"
    return (
        f"{which} a category of the model: {listed_categories(unknown)} "
        f"(the model knows {listed_categories(feature['categories'])})"
    )


def tabular_features(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    contract = record.get("input") or {}
    tabular = contract.get("tabular") if isinstance(contract, Mapping) else None
    if not isinstance(tabular, Mapping):
        return None
    return list(tabular.get("features") or []) or None
