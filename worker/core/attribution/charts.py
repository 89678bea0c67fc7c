"""Charts of attributions, drawn with Pillow: global importance bars, one row's waterfall, and
a beeswarm summary over many rows. Each returns PNG bytes and reads without the JSON."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

POSITIVE = (230, 30, 90)  # pushes the target up
NEGATIVE = (20, 130, 235)  # pushes it down
NEUTRAL = (70, 110, 170)
INK = (30, 30, 30)
FAINT = (120, 120, 120)
GRID = (228, 228, 228)
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip
MAX_WATERFALL_BARS = 12


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return int(box[2] - box[0])


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


class _Axis:
    def __init__(self, low: float, high: float, left: int, right: int):
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        pad = (high - low) * 0.04
        self.low, self.high = low - pad, high + pad
        self.left, self.right = left, right

    def __call__(self, value: float) -> float:
        return self.left + (value - self.low) / (self.high - self.low) * (self.right - self.left)

    def draw(self, draw: ImageDraw.ImageDraw, top: int, bottom: int, font, label: str) -> None:
        for tick in _ticks(self.low, self.high):
            x = self(tick)
            draw.line([(x, top), (x, bottom)], fill=GRID)
            text = fmt(tick)
            draw.text((x - _width(draw, text, font) / 2, bottom + 4), text, fill=FAINT, font=font)
        draw.line([(self.left, bottom), (self.right, bottom)], fill=FAINT)
        draw.text(((self.left + self.right) / 2 - _width(draw, label, font) / 2, bottom + 20), label, fill=INK, font=font)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if _width(draw, text, font) <= width:
        return text
    while text and _width(draw, text + "...", font) > width:
        text = text[:-1]
    return text + "..."


def _header(draw: ImageDraw.ImageDraw, title: str, subtitle: str, width: int) -> int:
    """Title, then one grey line per line of `subtitle`; each cut to the width."""
    draw.text((12, 8), _fit(draw, title, _font(16), width - 24), fill=INK, font=_font(16))
    y = 30
    for line in [text for text in subtitle.split("\n") if text][:2]:
        draw.text((12, y), _fit(draw, line, _font(12), width - 24), fill=FAINT, font=_font(12))
        y += 16
    return y


def importance_png(
    variables: Sequence[str], importance: Sequence[float], *, title: str, subtitle: str = "", unit: str = "mean |attribution|"
) -> bytes:
    """Horizontal bars of global importance, largest at the top."""
    font = _font(13)
    order = sorted(range(len(variables)), key=lambda i: -float(importance[i]))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max((_width(probe, variables[i], font) for i in order), default=40) + 20
    bar_height, gap = 22, 8
    width = max(720, label_width + 460)
    top = 76
    height = top + len(order) * (bar_height + gap) + 56
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    _header(draw, title, subtitle, width)
    values = [float(importance[i]) for i in order]
    axis = _Axis(0.0, max(values + [1e-12]), label_width, width - 80)
    axis.low = 0.0
    bottom = top + len(order) * (bar_height + gap)
    axis.draw(draw, top - 4, bottom, _font(11), unit)
    for row, (i, value) in enumerate(zip(order, values)):
        y = top + row * (bar_height + gap)
        name = variables[i]
        draw.text((label_width - 10 - _width(draw, name, font), y + 3), name, fill=INK, font=font)
        draw.rectangle([axis(0.0), y, max(axis(0.0) + 1, axis(value)), y + bar_height], fill=NEUTRAL)
        draw.text((axis(value) + 6, y + 3), fmt(value), fill=INK, font=font)
    return _png(image)


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
) -> bytes:
    """One row: from the baseline output (bottom) through each variable's push to the output
    (top); largest pushes at the top, the smallest merged when there are many."""
    font = _font(13)
    small = _font(11)
    order = sorted(range(len(variables)), key=lambda i: -abs(float(attributions[i])))
    bars: list[tuple[str, float]] = [
        (f"{variables[i]} = {value_text(values.get(variables[i]))}", float(attributions[i])) for i in order
    ]
    if len(bars) > MAX_WATERFALL_BARS:
        rest = bars[MAX_WATERFALL_BARS - 1 :]
        bars = bars[: MAX_WATERFALL_BARS - 1] + [(f"{len(rest)} other variables", sum(v for _, v in rest))]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max((_width(probe, label, font) for label, _ in bars), default=40) + 20
    bar_height, gap = 22, 8
    width = max(800, label_width + 540)
    top = 96
    height = top + len(bars) * (bar_height + gap) + 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    _header(draw, title, subtitle, width)
    # cumulative positions, from the bottom bar (smallest) up
    ends = []
    position = baseline_output
    for _, value in reversed(bars):
        ends.append((position, position + value))
        position += value
    ends.reverse()
    points = [baseline_output, output] + [p for pair in ends for p in pair]
    axis = _Axis(min(points), max(points), label_width + 60, width - 90)
    bottom = top + len(bars) * (bar_height + gap)
    axis.draw(draw, top - 10, bottom, small, "model output (target units)")
    for x_value, label, y in ((baseline_output, f"{baseline_label} = {fmt(baseline_output)}", bottom + 36),
                              (output, f"{output_label} = {fmt(output)}", top - 26)):  # fmt: skip
        x = axis(x_value)
        for dash in range(int(top - 10), int(bottom), 6):
            draw.line([(x, dash), (x, min(dash + 3, bottom))], fill=FAINT)
        draw.text((min(max(4, x - _width(draw, label, small) / 2), width - _width(draw, label, small) - 4), y), label, fill=INK, font=small)
    for row, ((label, value), (start, end)) in enumerate(zip(bars, ends)):
        y = top + row * (bar_height + gap)
        draw.text((label_width - 10 - _width(draw, label, font), y + 3), label, fill=INK, font=font)
        color = POSITIVE if value >= 0 else NEGATIVE
        x0, x1 = sorted((axis(start), axis(end)))
        tip = min(8, max(0, x1 - x0))
        if value >= 0:
            draw.polygon([(x0, y), (x1 - tip, y), (x1, y + bar_height / 2), (x1 - tip, y + bar_height), (x0, y + bar_height)], fill=color)
        else:
            draw.polygon([(x1, y), (x0 + tip, y), (x0, y + bar_height / 2), (x0 + tip, y + bar_height), (x1, y + bar_height)], fill=color)
        text = ("+" if value >= 0 else "") + fmt(value)
        if value >= 0:
            draw.text((x1 + 5, y + 4), text, fill=color, font=small)
        else:
            draw.text((x0 - 5 - _width(draw, text, small), y + 4), text, fill=color, font=small)
    return _png(image)


def _ramp(t: float) -> tuple[int, int, int]:
    """Low values blue, high values red (through purple)."""
    t = min(1.0, max(0.0, t))
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(NEGATIVE, POSITIVE))  # type: ignore[return-value]


def beeswarm_png(
    variables: Sequence[str],
    attributions: np.ndarray,
    colours: Sequence[Sequence[float] | Sequence[int]],
    kinds: Sequence[str],
    categories: Sequence[Sequence[str] | None],
    *,
    title: str,
    subtitle: str = "",
    max_dots: int = 1500,
) -> bytes:
    """One line of dots per variable (most important at the top): x = the attribution of one
    row, dots piled where they crowd. Numerics: colour from low (blue) to high (red) value;
    categoricals: one colour per category, named on the right."""
    attributions = np.asarray(attributions, dtype=np.float64)
    count, nvars = attributions.shape
    order = sorted(range(nvars), key=lambda j: -float(np.abs(attributions[:, j]).mean()))
    font = _font(13)
    small = _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max((_width(probe, variables[j], font) for j in order), default=40) + 20
    legend_width = 190
    row_height = 44
    width = max(860, label_width + 520 + legend_width)
    top = 80
    height = top + nvars * row_height + 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    _header(draw, title, subtitle, width)
    finite = attributions[np.isfinite(attributions)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    axis = _Axis(min(low, 0.0), max(high, 0.0), label_width, width - legend_width - 20)
    bottom = top + nvars * row_height
    axis.draw(draw, top - 6, bottom, small, "attribution (pushes the target down <  0  > up)")
    zero = axis(0.0)
    draw.line([(zero, top - 6), (zero, bottom)], fill=FAINT)
    keep = np.arange(count)
    if count > max_dots:
        keep = np.sort(np.random.default_rng(0).choice(count, max_dots, replace=False))
    radius = 2 if len(keep) > 400 else 3
    for row, j in enumerate(order):
        centre = top + row * row_height + row_height / 2
        draw.text((label_width - 10 - _width(draw, variables[j], font), centre - 8), variables[j], fill=INK, font=font)
        piles: dict[int, int] = {}
        for i in keep[np.argsort(np.abs(attributions[keep, j]), kind="stable")]:
            value = attributions[i, j]
            if not math.isfinite(value):
                continue
            x = axis(value)
            slot = int(x // (2 * radius + 1))
            level = piles.get(slot, 0)
            piles[slot] = level + 1
            offset = ((level + 1) // 2) * (2 * radius) * (1 if level % 2 else -1)
            offset = max(-row_height / 2 + radius, min(row_height / 2 - radius, offset))
            c = colours[j][i]
            if kinds[j] == "categorical":
                colour = PALETTE[int(c) % len(PALETTE)]
            else:
                colour = _ramp(float(c)) if math.isfinite(float(c)) else FAINT
            y = centre + offset
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        legend_x = width - legend_width + 4
        if kinds[j] == "categorical" and categories[j]:
            text_x = legend_x
            line = 0
            for index, name in enumerate(categories[j]):
                piece = str(name)[:14]
                w = _width(draw, piece, small) + 14
                if text_x + w > width - 4:
                    line += 1
                    text_x = legend_x
                    if line > 2:
                        draw.text((text_x, centre - 18 + 12 * line), "...", fill=FAINT, font=small)
                        break
                y = centre - 18 + 12 * line
                draw.ellipse([text_x, y + 3, text_x + 7, y + 10], fill=PALETTE[index % len(PALETTE)])
                draw.text((text_x + 9, y), piece, fill=INK, font=small)
                text_x += w
    # colour bar for numeric values
    bar_x = width - legend_width + 4
    bar_y = bottom + 30
    for k in range(120):
        draw.line([(bar_x + k, bar_y), (bar_x + k, bar_y + 8)], fill=_ramp(k / 119))
    draw.text((bar_x, bar_y + 10), "low", fill=FAINT, font=small)
    draw.text((bar_x + 120 - _width(draw, "high", small), bar_y + 10), "high", fill=FAINT, font=small)
    draw.text((bar_x, bar_y - 14), "numeric value", fill=FAINT, font=small)
    return _png(image)
