"""What JSON itself allows, checked on values Python's parser let through.

`json.loads` accepts NaN, Infinity and 1e999 (not JSON) and lone surrogates such as "\\ud800"
(not Unicode): stored, they fail later, on every read that serializes them. Refused at the door.
"""

from __future__ import annotations

import math
from typing import Any


def check_plain_json(value: Any, path: str) -> None:
    """Raises ValueError naming the first non-finite number or non-Unicode string under `path`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} is {value}: numbers must be finite")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), f"{path} (a key)")
            check_plain_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_plain_json(item, f"{path}[{index}]")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{path} holds a lone surrogate (\\u{ord(text[exc.start]):04x}): strings must be valid Unicode"
        ) from None
