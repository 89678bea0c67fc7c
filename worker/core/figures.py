"""Figures for people, drawn with matplotlib: the house setup every chart shares, and labelled
grids of images (the deconvnet and activation-maximization figures).

Identical jobs must give identical PNG bytes (artifacts are compared by sha256 across retries),
so every figure is drawn under matplotlib's own defaults (a user's matplotlibrc cannot leak in),
with its bundled DejaVu fonts, at a fixed dpi, and saved without the `Software` text chunk and
without any date. matplotlib is imported on the first figure, not when a worker starts.

Grids are laid out in pixels: the images are pasted into one canvas at whole-pixel positions
(enlarged by a whole factor with nearest neighbour, so a 12 px receptive field stays 12 sharp
squares) and matplotlib writes the text around them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from worker.core.imaging import fit, to_uint8

DPI = 100
INK = "#1e1e1e"
FAINT = "#6e6e6e"
MARGIN = 14
TITLE_PT, NOTE_PT, LABEL_PT, CAPTION_PT = 13.0, 9.5, 10.0, 8.5


@contextmanager
def figure(width_px: int, height_px: int) -> Iterator[Any]:
    """A matplotlib Figure of that size in pixels, on the Agg canvas, under the defaults."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update({"text.parse_math": False, "svg.hashsalt": "glassbox", "path.simplify": True})
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")
        FigureCanvasAgg(fig)
        yield fig


def png(fig: Any) -> bytes:
    """The figure's PNG bytes: fixed dpi, no software or date metadata (byte-identical reruns)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


class Measure:
    """Text widths in pixels, as the Agg renderer will draw them."""

    def __init__(self, fig: Any):
        from matplotlib.font_manager import FontProperties

        self._renderer = fig.canvas.get_renderer()
        self._fonts: dict[tuple[float, str], Any] = {}
        self._font = lambda size, weight: self._fonts.setdefault(
            (size, weight), FontProperties(size=size, weight=weight)
        )

    def width(self, text: str, size: float, weight: str = "normal") -> float:
        if not text:
            return 0.0
        w, _, _ = self._renderer.get_text_width_height_descent(text, self._font(size, weight), ismath=False)
        return float(w)

    def cut(self, text: str, size: float, width: float) -> str:
        """`text`, shortened with an ellipsis to fit `width` pixels."""
        if self.width(text, size) <= width:
            return text
        while text and self.width(text + "…", size) > width:
            text = text[:-1]
        return text + "…"

    def wrap(self, text: str, size: float, width: float, weight: str = "normal") -> list[str]:
        """`text` broken into lines of at most `width` pixels (at spaces)."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if line and self.width(candidate, size, weight) > width:
                    lines.append(line)
                    line = word
                else:
                    line = candidate
            lines.append(line)
        return lines


def line_height(points: float) -> int:
    return math.ceil(points * DPI / 72 * 1.35)


def image_grid_png(
    rows: Sequence[Sequence[np.ndarray | None]],
    *,
    title: str,
    notes: Sequence[str] = (),
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    group: int = 1,
    min_cell: int = 96,
    max_cell: int = 160,
    min_width: int = 760,
) -> bytes:
    """A titled grid of images. Columns come in groups of `group` (a projection and its patch:
    2), drawn close together with a wider gap between groups; `column_labels` and each row's
    `captions` have one entry per group (a caption may hold a second line after "\\n").
    `row_labels` (lines split at "\\n") go on the left; `notes` are wrapped under the title.

    Every image is scaled by the same factor, chosen so that the largest one fills a cell of
    `min_cell` to `max_cell` pixels: enlarged by a whole factor (nearest neighbour), or shrunk
    (area average) when it is larger than `max_cell`."""
    rows = [[None if c is None else to_uint8(c) for c in row] for row in rows]
    columns = max((len(row) for row in rows), default=0)
    groups = math.ceil(columns / group) if columns else 0
    largest = max((max(c.shape[:2]) for row in rows for c in row if c is not None), default=min_cell)
    if largest < min_cell:  # enlarge by a whole factor, the largest that stays within max_cell
        factor: float = max(1, min(math.ceil(min_cell / largest), max_cell // largest))
    else:
        factor = min(1.0, max_cell / largest)
    cell = min(max_cell, round(largest * factor))
    inner_gap, group_gap, row_gap = 3, 16, 12
    group_width = group * cell + (group - 1) * inner_gap
    caption_lines = max((c.count("\n") + 1 for row in captions or [] for c in row if c), default=0)
    caption_height = caption_lines * line_height(CAPTION_PT)

    with figure(min_width, 100) as fig:
        measure = Measure(fig)
        label_lines = [label.split("\n") for label in row_labels or []]
        label_width = max((measure.width(line, LABEL_PT, "bold" if i == 0 else "normal")
                           for lines in label_lines for i, line in enumerate(lines)), default=0.0)  # fmt: skip
        left = MARGIN + (math.ceil(label_width) + 14 if row_labels else 0)
        grid_width = groups * group_width + max(0, groups - 1) * group_gap
        width = max(min_width, left + grid_width + MARGIN)
        title_lines = measure.wrap(title, TITLE_PT, width - 2 * MARGIN, "bold")
        note_lines = [line for note in notes for line in measure.wrap(note, NOTE_PT, width - 2 * MARGIN)]
        top = MARGIN + len(title_lines) * line_height(TITLE_PT) + len(note_lines) * line_height(NOTE_PT) + 8
        header = line_height(LABEL_PT) + 2 if column_labels else 0
        row_height = cell + caption_height + row_gap
        height = top + header + len(rows) * row_height + MARGIN - row_gap + 4
        fig.set_size_inches(width / DPI, height / DPI)

        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        texts: list[tuple[float, float, str, dict[str, Any]]] = []
        y = MARGIN
        for line in title_lines:
            texts.append((MARGIN, y, line, {"fontsize": TITLE_PT, "weight": "bold", "color": INK}))
            y += line_height(TITLE_PT)
        for line in note_lines:
            texts.append((MARGIN, y, line, {"fontsize": NOTE_PT, "color": FAINT}))
            y += line_height(NOTE_PT)

        def group_x(g: int) -> int:
            return left + g * (group_width + group_gap)

        for g, label in enumerate(column_labels or []):
            text = measure.cut(label, LABEL_PT, group_width)
            texts.append(
                (group_x(g) + group_width / 2, top, text, {"fontsize": LABEL_PT, "color": INK, "ha": "center"})
            )
        for r, row in enumerate(rows):
            y0 = top + header + r * row_height
            if row_labels:
                lines = label_lines[r]
                start = y0 + cell / 2 - len(lines) * line_height(LABEL_PT) / 2
                for i, line in enumerate(lines):
                    style = {
                        "fontsize": LABEL_PT,
                        "color": INK if i == 0 else FAINT,
                        "weight": "bold" if i == 0 else "normal",
                    }
                    texts.append((MARGIN, start + i * line_height(LABEL_PT), line, style))
            for c, image in enumerate(row):
                if image is None:
                    continue
                picture = fit(image, cell, factor)
                h, w = picture.shape[:2]
                x0 = group_x(c // group) + (c % group) * (cell + inner_gap)
                top_left = (y0 + (cell - h) // 2, x0 + (cell - w) // 2)
                canvas[top_left[0] : top_left[0] + h, top_left[1] : top_left[1] + w] = picture
            for g, caption in enumerate((captions[r] if captions else [])[:groups]):
                for i, line in enumerate(caption.split("\n") if caption else []):
                    text = measure.cut(line, CAPTION_PT, group_width)
                    style = {"fontsize": CAPTION_PT, "color": INK if i == 0 else FAINT, "ha": "center"}
                    texts.append(
                        (group_x(g) + group_width / 2, y0 + cell + 2 + i * line_height(CAPTION_PT), text, style)
                    )

        fig.figimage(canvas, xo=0, yo=0, origin="upper")
        for x, y, text, style in texts:
            fig.text(x / width, 1 - y / height, text, va="top", **{"ha": "left", **style})
        return png(fig)
