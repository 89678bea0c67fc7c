"""How a cell of a tabular row is read, shared by the API (submit-time checks, no torch) and the
worker (encoding): one set of rules, so a row the API accepts always encodes."""

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
