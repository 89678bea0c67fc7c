"""Charts of pairwise interactions, drawn with matplotlib: the matrix of mean |interaction| per
pair, a pair's dataset view (mean interaction per cell of its two variables), and one row's
largest main effects and pairs (as a waterfall from the baseline output to the row's output).

Same house setup as charts.py (worker/core/figures.py: Agg, matplotlib's defaults, identical
bytes for identical input); each chart reads without the JSON: a title, the method line, axis
labels and a colour bar in the target's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.core.attribution.charts import NEGATIVE, POSITIVE, fmt, value_text, waterfall_png, write_header
from worker.core.figures import FAINT, INK, MARGIN, NOTE_PT, TITLE_PT, Measure, figure, line_height, png

LABEL_PT, TICK_PT = 10.0, 8.5
EMPTY = "#eeeeee"  # a cell with nothing to show (the diagonal, a cell without rows)
MIN_CELL, MAX_CELL = 26, 64  # px per matrix cell
ANNOTATE_FROM = 40  # cells at least this wide carry their value
COLOUR_BAR_PX = 120  # right of the matrix: the bar and its labels
MIN_WIDTH = 720  # px: room for the title and the method line above a small grid
MAX_SUBTITLE_LINES = 6


def _header(fig: Any, measure: Measure, title: str, subtitle: str, width: int) -> tuple[list[str], list[str], int]:
    """(title lines, subtitle lines, their height in px) for a figure `width` px wide."""
    title_lines = measure.wrap(title, TITLE_PT, width - 2 * MARGIN, "bold")
    subtitle_lines = [
        line for text in subtitle.split("\n") if text for line in measure.wrap(text, NOTE_PT, width - 2 * MARGIN)
    ][:MAX_SUBTITLE_LINES]
    height = MARGIN + len(title_lines) * line_height(TITLE_PT) + len(subtitle_lines) * line_height(NOTE_PT) + 10
    return title_lines, subtitle_lines, height


def _grid_png(
    values: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    title: str,
    subtitle: str,
    colour_label: str,
    diverging: bool,
    cell_text: np.ndarray | None = None,
    axis_labels: tuple[str, str] = ("", ""),
) -> bytes:
    """A heatmap of `values` [R, C] (NaN: an empty cell, drawn grey), rows labelled on the left,
    columns at the bottom (turned when long), a colour bar on the right. `cell_text` [R, C]
    (strings, may hold a second line) is written into cells wide enough to hold it."""
    from matplotlib.colors import LinearSegmentedColormap

    rows, columns = values.shape
    cell = int(max(MIN_CELL, min(MAX_CELL, 560 // max(rows, columns, 1))))
    if cell_text is not None:
        cell = max(cell, 56)
    with figure(800, 100) as fig:
        measure = Measure(fig)
        left = MARGIN + max((measure.width(label, LABEL_PT) for label in row_labels), default=0) + 12
        left += line_height(LABEL_PT) + 4 if axis_labels[0] else 0
        widest = max((measure.width(label, LABEL_PT) for label in column_labels), default=0)
        turned = widest > cell - 6
        bottom = 16 + (widest * 0.72 + 10 if turned else line_height(LABEL_PT)) + (line_height(LABEL_PT) + 6)
        width = int(max(MIN_WIDTH, left + columns * cell + COLOUR_BAR_PX + MARGIN))
        title_lines, subtitle_lines, header = _header(fig, measure, title, subtitle, width)
        height = int(header + rows * cell + bottom)
        fig.set_size_inches(width / fig.dpi, height / fig.dpi)
        write_header(fig, title_lines, subtitle_lines, width, height)
        ax = fig.add_axes((left / width, bottom / height, columns * cell / width, rows * cell / height))
        finite = values[np.isfinite(values)]
        high = float(np.abs(finite).max()) if finite.size else 1.0
        high = high if high > 0 else 1.0
        if diverging:
            colours = LinearSegmentedColormap.from_list("signed", [NEGATIVE, "#ffffff", POSITIVE])
            low = -high
        else:
            colours = LinearSegmentedColormap.from_list("magnitude", ["#ffffff", "#7b3294"])
            low = 0.0
        colours = colours.with_extremes(bad=EMPTY)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(columns), column_labels, rotation=40 if turned else 0, ha="right" if turned else "center",
                      rotation_mode="anchor", fontsize=LABEL_PT, color=INK)  # fmt: skip
        ax.set_yticks(range(rows), row_labels, fontsize=LABEL_PT, color=INK)
        ax.tick_params(length=0)
        ax.set_xticks(np.arange(-0.5, columns, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if axis_labels[1]:
            ax.set_xlabel(axis_labels[1], fontsize=LABEL_PT, color=FAINT)
        if axis_labels[0]:
            ax.set_ylabel(axis_labels[0], fontsize=LABEL_PT, color=FAINT)
        if cell_text is not None or cell >= ANNOTATE_FROM:
            for r in range(rows):
                for c in range(columns):
                    text = (
                        cell_text[r, c]
                        if cell_text is not None
                        else (fmt(values[r, c]) if np.isfinite(values[r, c]) else "")
                    )
                    strength = abs(values[r, c]) / high if np.isfinite(values[r, c]) else 0.0
                    colour = "white" if strength > 0.6 else (FAINT if not np.isfinite(values[r, c]) else INK)
                    ax.text(c, r, text, ha="center", va="center", fontsize=TICK_PT, color=colour)
        bar_left = (left + columns * cell + 24) / width
        bar = fig.add_axes((bar_left, bottom / height, 14 / width, rows * cell / height))
        fig.colorbar(image, cax=bar)
        bar.tick_params(labelsize=TICK_PT, colors=FAINT, length=2)
        bar.set_ylabel(colour_label, fontsize=TICK_PT, color=FAINT)
        for spine in bar.spines.values():
            spine.set_visible(False)
        return png(fig)


def interaction_matrix_png(
    variables: Sequence[str],
    mean_abs_pairs: np.ndarray,
    mean_abs_main: Sequence[float],
    order: Sequence[int],
    *,
    title: str,
    subtitle: str = "",
    unit: str = "target units",
) -> bytes:
    """The [V, V] matrix of mean |interaction| per pair (symmetric), variables in `order` (most
    important first) on both axes. The diagonal, which a pair cannot fill, is grey and names the
    variable's mean |main effect| when the cells are wide enough, so pairs read against it."""
    order = list(order)
    matrix = np.array(mean_abs_pairs, dtype=np.float64)[np.ix_(order, order)]
    np.fill_diagonal(matrix, np.nan)
    text = None
    if len(order) * MAX_CELL <= 560 or len(order) <= 10:
        text = np.array(
            [["" if r == c else fmt(matrix[r, c]) for c in range(len(order))] for r in range(len(order))], dtype=object
        )
        for k, j in enumerate(order):
            text[k, k] = f"main\n{fmt(float(mean_abs_main[j]))}"
    labels = [variables[j] for j in order]
    return _grid_png(
        matrix, labels, labels, title=title, subtitle=f"{subtitle}\ndiagonal: the variable's own mean |main effect|"
        if text is not None else subtitle,
        colour_label=f"mean |interaction| ({unit})", diverging=False, cell_text=text,
    )  # fmt: skip


def pair_view_png(
    variables: tuple[str, str],
    bins: tuple[Sequence[str], Sequence[str]],
    means: np.ndarray,
    counts: np.ndarray,
    *,
    title: str,
    subtitle: str = "",
    unit: str = "target units",
) -> bytes:
    """A pair's dataset view: rows are the bins (categories or quantile bins) of the first
    variable, columns those of the second, each cell the mean interaction of the pair over the
    explained rows that fall in it (signed: red raises the target, blue lowers it) and how many
    rows that is; cells without rows are grey."""
    means = np.asarray(means, dtype=np.float64)
    counts = np.asarray(counts)
    text = np.array(
        [[f"{fmt(means[r, c])}\nn={int(counts[r, c])}" if counts[r, c] else "no rows" for c in range(means.shape[1])]
         for r in range(means.shape[0])], dtype=object,
    )  # fmt: skip
    shown = np.where(counts > 0, means, np.nan)
    return _grid_png(
        shown, [str(b) for b in bins[0]], [str(b) for b in bins[1]], title=title, subtitle=subtitle,
        colour_label=f"mean interaction ({unit})", diverging=True, cell_text=text, axis_labels=variables,
    )  # fmt: skip


def row_terms_png(
    variables: Sequence[str],
    values: dict[str, Any],
    main_effects: Sequence[float],
    interactions: np.ndarray,
    *,
    output: float,
    baseline_output: float,
    title: str,
    subtitle: str = "",
    baseline_label: str = "E[f(baseline)]",
) -> bytes:
    """One row's main effects and pairs as a waterfall from the baseline output to the row's
    output (they add up to it for an efficient index), largest at the top, the rest merged."""
    labels, texts, terms = [], {}, []
    for i, name in enumerate(variables):
        labels.append(name)
        texts[name] = value_text(values.get(name))
        terms.append(float(main_effects[i]))
    first, second = np.triu_indices(len(variables), k=1)
    for i, j in zip(first.tolist(), second.tolist()):
        label = f"{variables[i]} × {variables[j]}"
        labels.append(label)
        texts[label] = f"{value_text(values.get(variables[i]))}, {value_text(values.get(variables[j]))}"
        terms.append(float(interactions[i, j]))
    return waterfall_png(
        labels, terms, texts, output=output, baseline_output=baseline_output, title=title, subtitle=subtitle,
        baseline_label=baseline_label, others="other terms",
    )  # fmt: skip
