"""What drives a target (an output or a hidden neuron) of a tabular model to its extremes:

- the rows that activate it most (the tabular "top 9");
- the input that maximizes it within the observed domain: each numeric variable between the
  smallest and largest value seen in the rows, each categorical among the categories seen.

The maximization is greedy coordinate ascent over the variables, which handles categoricals
exactly (every observed category is tried) and numerics on a grid refined around the best
point, started from the strongest rows; it never does worse than the strongest row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.core.attribution.base import forward_in_batches

GRID_POINTS = 33
REFINEMENTS = 3
MAX_STEPS = 200
STARTS = 3


@dataclass
class Domain:
    """Per variable: ("numeric", (low, high)) in user units, or ("categorical", categories)."""

    features: list[dict[str, Any]]
    ranges: dict[str, tuple[float, float]]
    categories: dict[str, list[str]]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for feature in self.features:
            name = feature["name"]
            if feature["type"] == "numeric":
                out[name] = {"type": "numeric", "min": self.ranges[name][0], "max": self.ranges[name][1]}
            else:
                out[name] = {"type": "categorical", "categories": self.categories[name]}
        return out


def observed_domain(features: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> Domain:
    """The range of each numeric and the categories of each categorical seen in `rows` (rows
    that encode: numbers may be numeric strings, categories strings or integer codes)."""
    ranges: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[str]] = {}
    for feature in features:
        name = feature["name"]
        if feature["type"] == "numeric":
            values = [float(row[name]) for row in rows]
            ranges[name] = (min(values), max(values))
        else:
            seen = {str(int(row[name])) if isinstance(row[name], (int, float)) else str(row[name]) for row in rows}
            categories[name] = [c for c in feature["categories"] if c in seen]
    return Domain([dict(f) for f in features], ranges, categories)


def top_rows(forward: nn.Module, encoded: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, values) of the k rows with the largest target value, largest first."""
    values = forward_in_batches(forward, encoded).double().cpu().numpy()
    order = np.argsort(-values, kind="stable")[:k]
    return order, values[order]


def _encode_value(feature: Mapping[str, Any], value: Any, width: int) -> np.ndarray:
    if feature["type"] == "categorical":
        vector = np.zeros(width, dtype=np.float32)
        vector[list(feature["categories"]).index(value)] = 1.0
        return vector
    return np.array([(float(value) - float(feature.get("mean", 0.0))) / float(feature.get("std", 1.0))], dtype=np.float32)


def maximize(
    forward: nn.Module,
    domain: Domain,
    groups: Sequence[Sequence[int]],
    starts: Sequence[Mapping[str, Any]],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """The input (user units) that maximizes the target within `domain`, by greedy coordinate
    ascent from each of `starts` (rows in user units); the best of the runs.

    Each step evaluates, in one batch, every single-variable change (each observed category;
    each numeric on a grid over its range) and takes the best; when none improves, the numeric
    grids are refined around the current point, up to REFINEMENTS levels."""
    features = domain.features
    best: dict[str, Any] | None = None
    for start_index, start in enumerate(starts):
        current = {f["name"]: _start_value(f, start[f["name"]], domain) for f in features}
        x = _encode(features, groups, current)
        score = float(forward_in_batches(forward, torch.from_numpy(x[None]).to(device))[0])
        initial, level, steps = score, 0, 0
        while steps < MAX_STEPS:
            steps += 1
            moves: list[tuple[int, Any]] = []
            for j, feature in enumerate(features):
                name = feature["name"]
                if feature["type"] == "categorical":
                    moves += [(j, c) for c in domain.categories[name] if c != current[name]]
                elif level == 0:
                    moves += [(j, v) for v in _grid(domain.ranges[name]) if v != current[name]]
                else:
                    moves += [(j, v) for v in _refined(domain.ranges[name], current[name], level) if v != current[name]]
            if not moves:
                break
            batch = np.repeat(x[None], len(moves), axis=0)
            for row, (j, value) in enumerate(moves):
                batch[row, list(groups[j])] = _encode_value(features[j], value, len(groups[j]))
            values = forward_in_batches(forward, torch.from_numpy(batch).to(device)).double().cpu().numpy()
            pick = int(np.argmax(values))
            if values[pick] > score + 1e-7 * max(1.0, abs(score)):
                j, value = moves[pick]
                score, x = float(values[pick]), batch[pick].copy()
                current[features[j]["name"]] = value
            elif level + 1 < REFINEMENTS:
                level += 1
            else:
                break
        run = {"values": dict(current), "activation": score, "start_activation": initial, "start": start_index, "steps": steps}
        if best is None or run["activation"] > best["activation"]:
            best = run
    assert best is not None
    return best


def _start_value(feature: Mapping[str, Any], value: Any, domain: Domain) -> Any:
    name = feature["name"]
    if feature["type"] == "numeric":
        low, high = domain.ranges[name]
        return min(high, max(low, float(value)))
    key = str(int(value)) if isinstance(value, (int, float)) else str(value)
    return key if key in domain.categories[name] else domain.categories[name][0]


def _encode(features: Sequence[Mapping[str, Any]], groups: Sequence[Sequence[int]], values: Mapping[str, Any]) -> np.ndarray:
    width = sum(len(g) for g in groups)
    x = np.zeros(width, dtype=np.float32)
    for feature, columns in zip(features, groups):
        x[list(columns)] = _encode_value(feature, values[feature["name"]], len(columns))
    return x


def _grid(bounds: tuple[float, float]) -> list[float]:
    return np.linspace(bounds[0], bounds[1], GRID_POINTS).tolist()


def _refined(bounds: tuple[float, float], centre: float, level: int) -> list[float]:
    """17 points within one grid step of the level above, around `centre`, inside the bounds."""
    low, high = bounds
    step = (high - low) / (GRID_POINTS - 1) / 8 ** (level - 1)
    return sorted({min(high, max(low, v)) for v in np.linspace(centre - step, centre + step, 17).tolist()})
