"""``retail-mlp``: a synthetic retail weekly-sales process with a known, documented structure.

Each row is one item in one store in one week. All variables are drawn independently of each
other, except ``temperature``, which depends on ``season``. The generating process
(``log`` is the natural logarithm; the named constants below hold the exact numbers):

Variables
    item_category  categorical: apparel, electronics, garden, grocery, outdoor, toys (uniform)
    season         categorical: winter, spring, summer, autumn (uniform)
    region         categorical: north, south, east, west (uniform) -- **no effect at all**
    store_size     numeric, m², uniform on [400, 3000], whole m²
    price          numeric, currency units, log-uniform on [8, 45] for every category
                   (independent of category by design, so attributions are not confounded)
    discount       numeric fraction: 0 in 60 % of rows, else uniform on [0.05, 0.50]
    promotion      categorical "yes" (35 %) / "no"
    holiday_week   categorical "yes" (12 %) / "no"
    temperature    numeric, °C: season mean (winter 3, spring 13, summer 24, autumn 12)
                   plus normal noise with sd 4, one decimal

Expected log sales (``retail_log_mean``)::

    mu = BASE[category]                                  # grocery 300 ... electronics 25 units
       - ELASTICITY[category] * log(price / 20)          # grocery 0.5 ... electronics 2.0
       + SEASON_EFFECT[category][season]                 # garden/outdoor high in spring/summer,
                                                         # apparel high in winter/autumn
       + 0.85 * log(store_size / 1500)                   # bigger stores sell more
       + log(1.65) * [promotion == "yes"]                # promotion: +65 %
       + 1.2 * discount                                  # discount 0.5: x1.82
       + HOLIDAY_EFFECT[category] * [holiday_week == "yes"]   # toys x2.7, others x1.1
       + TEMPERATURE_SLOPE[category] * (temperature - 15)     # garden/outdoor +2 % per °C
    weekly_sales = round(exp(mu + e)),  e ~ Normal(0, 0.12)   # units sold, whole number

Per-category constants::

                  base units  elasticity  winter spring summer autumn  holiday  per °C
    apparel           80         1.6      +0.35  -0.15  -0.35  +0.15    +0.1     0
    electronics       25         2.0      +0.10  -0.05  -0.05   0       +0.1     0
    garden            50         1.0      -0.90  +0.60  +0.40  -0.10    +0.1    +0.02
    grocery          300         0.5       0      0      0      0       +0.1     0
    outdoor           35         1.1      -0.60  +0.20  +0.60  -0.20    +0.1    +0.02
    toys              40         1.2      +0.20  -0.10  -0.10   0       +1.0     0

Because temperature follows season, a model fitted to these rows may share the garden/outdoor
seasonal effect between ``season`` and ``temperature``.

Drivers, in order of global importance (permutation importance of ``retail_log_mean``, i.e.
the mean squared change of mu when one variable is shuffled across rows; approximate values
on 20 000 rows, log units squared)::

    item_category 1.65 > price 0.86 > store_size 0.41 > season 0.21 > promotion 0.115
    > discount 0.071 > holiday_week 0.038 > temperature 0.019 > region 0 (exactly)

Each is 1.6x to 2.1x the next. For the additive terms this is 2 x the variance of the term;
item_category includes its interactions (elasticity, season, holiday and temperature effects
differ by category).

``RETAIL_DOCUMENTED_DRIVERS`` lists that order; ``RETAIL_IRRELEVANT`` the no-effect variables.

The model ``retail-mlp`` (a :class:`~worker.models.tabular.TabularMLP`) predicts
``log1p(weekly_sales)``: output 0 is the natural log of (1 + weekly units sold). The residual
noise (sd 0.12 plus rounding) caps R² on that scale near 0.99.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MODEL_ID = "retail-mlp"
RETAIL_TARGET = "weekly_sales"
RETAIL_OUTPUT_MEANING = "log1p(weekly_sales): natural log of (1 + units of the item sold in the week)"

CATEGORIES = ["apparel", "electronics", "garden", "grocery", "outdoor", "toys"]
SEASONS = ["winter", "spring", "summer", "autumn"]
REGIONS = ["north", "south", "east", "west"]
YES_NO = ["no", "yes"]

# expected weekly units at the reference point (price 20, 1500 m², no promotion/discount,
# ordinary week, 15 °C, season effect 0)
BASE_UNITS = {"apparel": 80.0, "electronics": 25.0, "garden": 50.0, "grocery": 300.0, "outdoor": 35.0, "toys": 40.0}
ELASTICITY = {"apparel": 1.6, "electronics": 2.0, "garden": 1.0, "grocery": 0.5, "outdoor": 1.1, "toys": 1.2}
REFERENCE_PRICE = 20.0
SEASON_EFFECT = {  # log units
    "apparel": {"winter": 0.35, "spring": -0.15, "summer": -0.35, "autumn": 0.15},
    "electronics": {"winter": 0.10, "spring": -0.05, "summer": -0.05, "autumn": 0.0},
    "garden": {"winter": -0.90, "spring": 0.60, "summer": 0.40, "autumn": -0.10},
    "grocery": {"winter": 0.0, "spring": 0.0, "summer": 0.0, "autumn": 0.0},
    "outdoor": {"winter": -0.60, "spring": 0.20, "summer": 0.60, "autumn": -0.20},
    "toys": {"winter": 0.20, "spring": -0.10, "summer": -0.10, "autumn": 0.0},
}
STORE_SIZE_ELASTICITY = 0.85
REFERENCE_STORE_SIZE = 1500.0
PROMOTION_UPLIFT = 1.65  # multiplicative
DISCOUNT_SLOPE = 1.2  # log units per unit of discount fraction
HOLIDAY_EFFECT = {c: (1.0 if c == "toys" else 0.1) for c in CATEGORIES}  # log units
TEMPERATURE_SLOPE = {c: (0.02 if c in ("garden", "outdoor") else 0.0) for c in CATEGORIES}
REFERENCE_TEMPERATURE = 15.0
SEASON_TEMPERATURE = {"winter": 3.0, "spring": 13.0, "summer": 24.0, "autumn": 12.0}
TEMPERATURE_SD = 4.0
NOISE_SD = 0.12

STORE_SIZE_RANGE = (400, 3000)
PRICE_RANGE = (8.0, 45.0)
DISCOUNT_ZERO_SHARE = 0.6
DISCOUNT_RANGE = (0.05, 0.50)
PROMOTION_SHARE = 0.35
HOLIDAY_SHARE = 0.12

RETAIL_DOCUMENTED_DRIVERS = [
    "item_category",
    "price",
    "store_size",
    "season",
    "promotion",
    "discount",
    "holiday_week",
    "temperature",
]
RETAIL_IRRELEVANT = ["region"]
RETAIL_COLUMNS = [
    "item_category",
    "season",
    "region",
    "store_size",
    "price",
    "discount",
    "promotion",
    "holiday_week",
    "temperature",
    RETAIL_TARGET,
]

# Means/stds of the numeric variables over the training rows (generate_retail(20000, seed=0)),
# rounded; train_tabular checks they still match.
RETAIL_FEATURES: list[dict[str, Any]] = [
    {"name": "item_category", "type": "categorical", "categories": list(CATEGORIES)},
    {"name": "season", "type": "categorical", "categories": list(SEASONS)},
    {"name": "region", "type": "categorical", "categories": list(REGIONS)},
    {"name": "store_size", "type": "numeric", "mean": 1700.0, "std": 750.0},
    {"name": "price", "type": "numeric", "mean": 21.3, "std": 10.4},
    {"name": "discount", "type": "numeric", "mean": 0.11, "std": 0.16},
    {"name": "promotion", "type": "categorical", "categories": list(YES_NO)},
    {"name": "holiday_week", "type": "categorical", "categories": list(YES_NO)},
    {"name": "temperature", "type": "numeric", "mean": 13.0, "std": 8.5},
]

# Seeds of the built-in splits (generate_retail(count, seed)).
TRAIN_SEED, VALIDATION_SEED, TEST_SEED, SAMPLE_SEED = 0, 1, 2, 3
TRAIN_COUNT, VALIDATION_COUNT, TEST_COUNT, SAMPLE_COUNT = 20000, 4000, 5000, 3000


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    return [row[name] for row in rows]


def retail_log_mean(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The noise-free expected log sales ``mu`` of each row (see the module docstring)."""
    category = _column(rows, "item_category")
    season = _column(rows, "season")
    price = np.array(_column(rows, "price"), dtype=np.float64)
    store_size = np.array(_column(rows, "store_size"), dtype=np.float64)
    discount = np.array(_column(rows, "discount"), dtype=np.float64)
    temperature = np.array(_column(rows, "temperature"), dtype=np.float64)
    promotion = np.array([p == "yes" for p in _column(rows, "promotion")], dtype=np.float64)
    holiday = np.array([h == "yes" for h in _column(rows, "holiday_week")], dtype=np.float64)
    base = np.log(np.array([BASE_UNITS[c] for c in category]))
    elasticity = np.array([ELASTICITY[c] for c in category])
    seasonal = np.array([SEASON_EFFECT[c][s] for c, s in zip(category, season)])
    holiday_effect = np.array([HOLIDAY_EFFECT[c] for c in category])
    temperature_slope = np.array([TEMPERATURE_SLOPE[c] for c in category])
    return (
        base
        - elasticity * np.log(price / REFERENCE_PRICE)
        + seasonal
        + STORE_SIZE_ELASTICITY * np.log(store_size / REFERENCE_STORE_SIZE)
        + np.log(PROMOTION_UPLIFT) * promotion
        + DISCOUNT_SLOPE * discount
        + holiday_effect * holiday
        + temperature_slope * (temperature - REFERENCE_TEMPERATURE)
    )


def generate_retail(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` rows (user units, categories as strings, incl. ``weekly_sales``); deterministic
    in ``seed`` (numpy PCG64)."""
    if count < 0:
        raise ValueError("count must be non-negative")
    rng = np.random.default_rng(seed)
    category = rng.integers(0, len(CATEGORIES), count)
    season = rng.integers(0, len(SEASONS), count)
    region = rng.integers(0, len(REGIONS), count)
    store_size = np.round(rng.uniform(*STORE_SIZE_RANGE, count))
    price = np.round(np.exp(rng.uniform(np.log(PRICE_RANGE[0]), np.log(PRICE_RANGE[1]), count)), 2)
    discounted = rng.random(count) >= DISCOUNT_ZERO_SHARE
    discount = np.where(discounted, np.round(rng.uniform(*DISCOUNT_RANGE, count), 2), 0.0)
    promotion = rng.random(count) < PROMOTION_SHARE
    holiday = rng.random(count) < HOLIDAY_SHARE
    season_temperature = np.array([SEASON_TEMPERATURE[SEASONS[s]] for s in season])
    temperature = np.round(season_temperature + rng.normal(0.0, TEMPERATURE_SD, count), 1)
    noise = rng.normal(0.0, NOISE_SD, count)
    rows: list[dict[str, Any]] = [
        {
            "item_category": CATEGORIES[category[i]],
            "season": SEASONS[season[i]],
            "region": REGIONS[region[i]],
            "store_size": float(store_size[i]),
            "price": float(price[i]),
            "discount": float(discount[i]),
            "promotion": "yes" if promotion[i] else "no",
            "holiday_week": "yes" if holiday[i] else "no",
            "temperature": float(temperature[i]) + 0.0,  # no -0.0
        }
        for i in range(count)
    ]
    if count:
        sales = np.round(np.exp(retail_log_mean(rows) + noise))
        for row, value in zip(rows, sales):
            row[RETAIL_TARGET] = int(value)
    return rows


def retail_target(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The model's training target for rows with ``weekly_sales``: ``log1p(weekly_sales)``."""
    return np.log1p(np.array([float(row[RETAIL_TARGET]) for row in rows], dtype=np.float64))


def permutation_importance(
    function, rows: Sequence[Mapping[str, Any]], variables: Sequence[str], seed: int = 0
) -> dict[str, float]:
    """Mean squared change of ``function(rows)`` when each variable is shuffled across rows."""
    rng = np.random.default_rng(seed)
    reference = np.asarray(function(rows), dtype=np.float64)
    scores: dict[str, float] = {}
    for name in variables:
        order = rng.permutation(len(rows))
        shuffled = [dict(row, **{name: rows[j][name]}) for row, j in zip(rows, order)]
        scores[name] = float(np.mean((np.asarray(function(shuffled), dtype=np.float64) - reference) ** 2))
    return scores
