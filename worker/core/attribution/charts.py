"""Charts of attributions, drawn with matplotlib: global importance bars, one row's waterfall,
and a beeswarm summary over many rows. Each returns PNG bytes that read without the JSON.

The house setup (matplotlib's defaults, Agg, byte-identical output for identical input) is in
worker/core/figures.py; this module only lays out each chart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from worker.core.figures import FAINT, INK, MARGIN, NOTE_PT, TITLE_PT, Measure, figure, line_height, png

POSITIVE = "#e61e5a"  # pushes the target up
NEGATIVE = "#1482eb"  # pushes it down
NEUTRAL = "#466eaa"
GRID = "#e4e4e4"
WIDTH = 900  # px
LABEL_PT, TICK_PT, VALUE_PT = 10.0, 8.5, 8.5
MAX_WATERFALL_BARS = 12
MAX_SUBTITLE_LINES = 4
MAX_BEESWARM_ROWS = 400  # more dots than this pile into blots; a seeded sample is drawn instead


def fmt(value: float) -> str:
    """A short human form of a number: 3 significant digits, no exponent for usual sizes."""
    if value is None or not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        digits = max(0, 2 - int(math.floor(math.log10(magnitude))))
        return f"{value:.{digits}f}"
    return f"{value:.2e}"


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return fmt(value) if not value.is_integer() or abs(value) >= 1e5 else str(int(value))
    return str(value)


@contextmanager
def _chart(
    title: str, subtitle: str, labels: Sequence[str], rows: int, row_px: int, *, top_px: int = 8, bottom_px: int = 50,
    right_px: int = 60,
) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """A figure WIDTH px wide with the title and subtitle on top, and one axes whose y axis
    holds `rows` rows of `row_px` pixels labelled by `labels` (their width sets the left margin)."""
    with figure(WIDTH, 100) as fig:
        measure = Measure(fig)
        title_lines = measure.wrap(title, TITLE_PT, WIDTH - 2 * MARGIN, "bold")
        subtitle_lines = [
            line for text in subtitle.split("\n") if text for line in measure.wrap(text, NOTE_PT, WIDTH - 2 * MARGIN)
        ][:MAX_SUBTITLE_LINES]
        header = MARGIN + len(title_lines) * line_height(TITLE_PT) + len(subtitle_lines) * line_height(NOTE_PT) + 10
        left = MARGIN + max((measure.width(label, LABEL_PT) for label in labels), default=0.0) + 12
        plot_height = rows * row_px
        height = header + top_px + plot_height + bottom_px
        fig.set_size_inches(WIDTH / fig.dpi, height / fig.dpi)
        write_header(fig, title_lines, subtitle_lines, WIDTH, height)
        ax = fig.add_axes((left / WIDTH, bottom_px / height, (WIDTH - left - right_px) / WIDTH, plot_height / height))
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.spines["bottom"].set_color(FAINT)
        ax.tick_params(axis="x", labelsize=TICK_PT, colors=FAINT)
        ax.tick_params(axis="y", length=0, labelsize=LABEL_PT, labelcolor=INK)
        ax.grid(axis="x", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_ylim(rows - 0.5, -0.5)  # row 0 at the top
        yield fig, ax


def importance_png(
    variables: Sequence[str], importance: Sequence[float], *, title: str, subtitle: str = "", unit: str = "mean |attribution|"
) -> bytes:  # fmt: skip
    """Horizontal bars of global importance, largest at the top."""
    order = sorted(range(len(variables)), key=lambda i: (-float(importance[i]), i))
    values = [float(importance[i]) for i in order]
    labels = [variables[i] for i in order]
    with _chart(title, subtitle, labels, len(order), 30) as (fig, ax):
        ax.barh(range(len(order)), values, height=0.72, color=NEUTRAL)
        ax.set_yticks(range(len(order)), labels)
        high = max(values + [1e-12])
        ax.set_xlim(0, high * 1.14)
        for row, value in enumerate(values):
            ax.text(value + high * 0.01, row, fmt(value), va="center", fontsize=VALUE_PT, color=INK)
        ax.set_xlabel(unit, fontsize=LABEL_PT, color=INK)
        return png(fig)


def waterfall_png(
    variables: Sequence[str],
    attributions: Sequence[float],
    values: dict[str, Any],
    *,
    output: float,
    baseline_output: float,
    title: str,
    subtitle: str = "",
    output_label: str = "f(x)",
    baseline_label: str = "E[f(baseline)]",
    others: str = "other variables",
) -> bytes:
    """One row: from the baseline output (bottom) through each variable's push to the output
    (top); largest pushes at the top, the smallest merged (as "N `others`") when there are many.
    The bars may be any terms that add up to the output change (interaction_charts.py draws a
    row's main effects and pairs this way)."""
    order = sorted(range(len(variables)), key=lambda i: (-abs(float(attributions[i])), i))
    bars: list[tuple[str, float]] = [
        (f"{variables[i]} = {value_text(values.get(variables[i]))}", float(attributions[i])) for i in order
    ]
    if len(bars) > MAX_WATERFALL_BARS:
        rest = bars[MAX_WATERFALL_BARS - 1 :]
        bars = bars[: MAX_WATERFALL_BARS - 1] + [(f"{len(rest)} {others}", sum(v for _, v in rest))]
    starts = []  # each bar starts where the ones below it (smaller pushes) ended
    position = baseline_output
    for _, value in reversed(bars):
        starts.append(position)
        position += value
    starts.reverse()
    labels = [label for label, _ in bars]
    with _chart(title, subtitle, labels, len(bars), 30, top_px=26, bottom_px=66) as (fig, ax):
        for row, ((_, value), start) in enumerate(zip(bars, starts)):
            colour = POSITIVE if value >= 0 else NEGATIVE
            ax.barh(row, value, left=start, height=0.68, color=colour)
            end = start + value
            ax.text(end, row, f"  {'+' if value >= 0 else ''}{fmt(value)}  ", va="center", fontsize=VALUE_PT,
                    color=colour, ha="left" if value >= 0 else "right")  # fmt: skip
        ax.set_yticks(range(len(bars)), labels)
        points = [baseline_output, output, *starts, *(s + v for s, (_, v) in zip(starts, bars))]
        low, high = min(points), max(points)
        pad = (high - low) * 0.18 or 0.5
        ax.set_xlim(low - pad, high + pad)
        for x, text, y, va in ((baseline_output, f"{baseline_label} = {fmt(baseline_output)}", len(bars) - 0.5, "top"),
                               (output, f"{output_label} = {fmt(output)}", -0.5, "bottom")):  # fmt: skip
            ax.axvline(x, color=FAINT, linewidth=0.9, linestyle=(0, (3, 3)))
            ax.annotate(text, (x, y), xytext=(0, 18 if va == "bottom" else -22), textcoords="offset points",
                        ha="center", va=va, fontsize=TICK_PT, color=INK, annotation_clip=False)  # fmt: skip
        ax.set_xlabel("model output (target units)", fontsize=LABEL_PT, color=INK, labelpad=22)
        return png(fig)


def beeswarm_sample(count: int, seed: int, limit: int = MAX_BEESWARM_ROWS) -> np.ndarray:
    """The rows a beeswarm draws: all of them up to `limit`, else `limit` drawn uniformly without
    replacement with `seed` (the same job draws the same dots), in their original order."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 2]).choice(count, limit, replace=False))


def swarm_offsets(x: np.ndarray, bins: int = 120, spread: float = 0.42) -> np.ndarray:
    """Vertical offsets for a beeswarm row: values in the same narrow bin of x pile up,
    alternately above and below the centre line, scaled so the tallest pile fits `spread`."""
    finite = np.isfinite(x)
    offsets = np.zeros(len(x))
    if not finite.any():
        return offsets
    low, high = float(x[finite].min()), float(x[finite].max())
    slot = np.zeros(len(x), dtype=int)
    if high > low:
        slot[finite] = np.minimum(((x[finite] - low) / (high - low) * bins).astype(int), bins - 1)
    level = np.zeros(len(x))
    counts: dict[int, int] = {}
    for i in np.flatnonzero(finite):
        count = counts.get(int(slot[i]), 0)
        counts[int(slot[i])] = count + 1
        level[i] = ((count + 1) // 2) * (1 if count % 2 else -1)
    tallest = max(1, max(counts.values()) // 2)
    return level / tallest * spread


def _category_legend(ax: Any, row: int, names: list[str], palette: list[str]) -> None:
    """Up to 6 categories, two columns of three lines, right of the row's dots."""
    shown = names if len(names) <= 6 else names[:5] + [f"+{len(names) - 5} more"]
    for k, name in enumerate(shown):
        x, y = 8 + 84 * (k % 2), 11 - 11 * (k // 2)
        where = {"xy": (1.0, row), "xycoords": ("axes fraction", "data"), "textcoords": "offset points", "va": "center"}
        if k < 5 or len(names) <= 6:
            ax.annotate("●", xytext=(x, y), fontsize=7, color=palette[k % len(palette)], **where)
        ax.annotate(name if len(name) <= 11 else name[:10] + "…", xytext=(x + 9, y), fontsize=7, color=INK, **where)


def beeswarm_png(
    variables: Sequence[str],
    attributions: np.ndarray,
    colours: Sequence[Sequence[float] | Sequence[int]],
    kinds: Sequence[str],
    categories: Sequence[Sequence[str] | None],
    *,
    title: str,
    subtitle: str = "",
    total_rows: int | None = None,
    sample_note: str = "",
) -> bytes:
    """One line of dots per variable (most important at the top): x = the attribution of one
    row, dots piled where they crowd. Numerics: colour from low (blue) to high (red) value;
    categoricals: one colour per category, named on the right. The caller subsamples the rows
    (`attributions` holds those shown; `total_rows` and `sample_note` say so on the chart)."""
    from matplotlib.colors import LinearSegmentedColormap

    attributions = np.asarray(attributions, dtype=np.float64)
    count, nvars = attributions.shape
    order = sorted(range(nvars), key=lambda j: (-float(np.abs(attributions[:, j]).mean()), j))
    ramp = LinearSegmentedColormap.from_list("low_high", [NEGATIVE, "#9b4fb0", POSITIVE])
    palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]  # fmt: skip
    shown = f"{count:,} rows" if total_rows in (None, count) else f"{count:,} of {total_rows:,} rows ({sample_note})"
    subtitle = f"{subtitle}\none dot per row: {shown}" if subtitle else f"one dot per row: {shown}"
    labels = [variables[j] for j in order]
    with _chart(title, subtitle, labels, nvars, 46, bottom_px=70, right_px=190) as (fig, ax):
        finite = attributions[np.isfinite(attributions)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        pad = (max(high, 0.0) - min(low, 0.0)) * 0.04 or 0.5
        ax.set_xlim(min(low, 0.0) - pad, max(high, 0.0) + pad)
        ax.axvline(0.0, color=FAINT, linewidth=0.9)
        size = 9 if count > 400 else 14
        for row, j in enumerate(order):
            x = attributions[:, j]
            keep = np.isfinite(x)
            y = row + swarm_offsets(x)
            raw = np.asarray(colours[j], dtype=np.float64)
            if kinds[j] == "categorical":
                face = [palette[int(c) % len(palette)] for c in raw]
            else:
                face = [ramp(float(c)) if math.isfinite(c) else FAINT for c in raw]
            face = [f for f, k in zip(face, keep) if k]
            ax.scatter(x[keep], y[keep], s=size, c=face, linewidths=0, rasterized=False)
            if kinds[j] == "categorical" and categories[j]:
                _category_legend(ax, row, [str(name) for name in categories[j]], palette)
        ax.set_yticks(range(nvars), labels)
        ax.set_xlabel("attribution (pushes the target down  <  0  >  up)", fontsize=LABEL_PT, color=INK)
        bar = fig.add_axes((1 - 170 / WIDTH, 18 / fig.bbox.height, 120 / WIDTH, 8 / fig.bbox.height))
        bar.imshow(np.linspace(0, 1, 120)[None, :], aspect="auto", cmap=ramp)
        bar.set_xticks([0, 119], ["low", "high"], fontsize=TICK_PT, color=FAINT)
        bar.set_yticks([])
        bar.tick_params(length=0)
        for spine in bar.spines.values():
            spine.set_visible(False)
        bar.set_title("numeric value", fontsize=TICK_PT, color=FAINT, pad=3)
        return png(fig)


def write_header(fig: Any, title_lines: list[str], subtitle_lines: list[str], width: int, height: int) -> None:
    """The title (bold) and the subtitle lines at the top left of a chart `width` x `height` px."""
    y = MARGIN
    for line in title_lines:
        fig.text(MARGIN / width, 1 - y / height, line, va="top", fontsize=TITLE_PT, weight="bold", color=INK)
        y += line_height(TITLE_PT)
    for line in subtitle_lines:
        fig.text(MARGIN / width, 1 - y / height, line, va="top", fontsize=NOTE_PT, color=FAINT)
        y += line_height(NOTE_PT)
