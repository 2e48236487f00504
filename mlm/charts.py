"""Charts drawn on the server as inline SVG: line and bar charts with axes, labels, a legend and
reference lines, and the numbers as a table (templates/mlm/_chart.html draws them).

Why by hand and not a charting library: the pages need a few plain charts that work without
scripts (the CSP allows none inline) and without a CDN; the JavaScript libraries need both, and
the Python ones (matplotlib, pygal) would add a heavy dependency for some fifty lines of geometry.
The SVG scales with its viewBox, so a chart fits a phone; colours come with dash patterns so
that lines differ without colour, and every point carries its value in a <title>.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count

# The geometry of every chart, in viewBox units; CSS scales the SVG to its container.
WIDTH = 480
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 52, 24, 14, 34
MAX_X_LABELS = 6
MAX_BAR = 40

# Okabe and Ito's palette, safe for the common colour blindnesses, with dash patterns on top.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#6B6B6B"]
DASHES = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", "10 2"]

_ids = count(1)


def format_count(value: float) -> str:
    """A count with thousands separators: 12,345."""
    return f"{round(value):,}"


def format_percent(value: float) -> str:
    """A percentage with two decimals (complaint rates live near 0.1%)."""
    return f"{value:.2f}%"


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label; None leaves a gap (no data for that label)."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class ReferenceLine:
    """A horizontal line at `value`, e.g. a limit the figures should stay under."""

    value: float
    label: str


@dataclass(frozen=True)
class Tick:
    position: str
    text: str


@dataclass(frozen=True)
class Mark:
    """A point (line chart) or a bar, with what its tooltip says."""

    x: str
    y: str
    width: str
    height: str
    title: str


@dataclass
class DrawnSeries:
    name: str
    colour: str
    dash: str
    path: str = ""
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Chart:
    """Everything the template needs: coordinates are strings, already rounded."""

    id: str
    kind: str  # "line" or "bar"
    title: str
    description: str
    labels: list[str]
    series: list[DrawnSeries]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    references: list[tuple[str, str, str, str]]  # (y, label, label's y, label's anchor)
    rows: list[tuple[str, list[str]]]  # the data table: label, formatted values
    value_label: str
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _n(value: float) -> str:
    return f"{value:.1f}"


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def y_scale(highest: float, *, integers: bool) -> tuple[float, float]:
    """(top of the axis, tick step) for values from 0 to `highest`, about four ticks."""
    step = nice_step(highest / 4 if highest > 0 else 0.25)
    if integers:
        step = max(1.0, math.ceil(step))
    top = step * max(1, math.ceil(highest / step - 1e-9))
    return top, step


def _tick_text(value: float, step: float, fmt: Callable[[float], str], integers: bool) -> str:
    if integers:
        return format_count(value)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    text = f"{value:.{decimals}f}"
    return text + "%" if fmt is format_percent else text


def _x_ticks(labels: Sequence[str], centres: Sequence[float]) -> list[Tick]:
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    return [
        Tick(_n(centres[i]), labels[i]) for i in range(len(labels)) if i % every == 0 and labels[i]
    ]


def _chart(
    kind: str,
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    tick_labels: Sequence[str] | None,
    value_format: Callable[[float], str],
    value_label: str,
    references: Sequence[ReferenceLine],
) -> Chart:
    labels = list(labels)
    tick_labels = list(tick_labels) if tick_labels is not None else labels
    values = [v for s in series for v in s.values if v is not None]
    integers = value_format is format_count
    highest = max([*values, *(r.value for r in references), 0])
    top, step = y_scale(highest, integers=integers)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    n = max(1, len(labels))
    if kind == "line":
        centres = [LEFT + plot_w / 2] if n == 1 else [LEFT + i * plot_w / (n - 1) for i in range(n)]
    else:
        band = plot_w / n
        centres = [LEFT + band * (i + 0.5) for i in range(n)]

    drawn = []
    for index, one in enumerate(series):
        shape = DrawnSeries(
            name=one.name, colour=COLOURS[index % len(COLOURS)], dash=DASHES[index % len(DASHES)]
        )
        if kind == "line":
            commands, pen_down = [], False
            for i, value in enumerate(one.values):
                if value is None:
                    pen_down = False
                    continue
                commands.append(f"{'L' if pen_down else 'M'}{_n(centres[i])} {_n(y(value))}")
                pen_down = True
                shape.marks.append(
                    Mark(
                        _n(centres[i]),
                        _n(y(value)),
                        "",
                        "",
                        f"{one.name}, {labels[i]}: {value_format(value)}",
                    )
                )
            shape.path = " ".join(commands)
        else:
            bar_w = min(plot_w / n * 0.8 / max(1, len(series)), MAX_BAR)
            group = bar_w * max(1, len(series))
            for i, value in enumerate(one.values):
                if value is None:
                    continue
                x = centres[i] - group / 2 + index * bar_w
                top_y = y(value)
                shape.marks.append(
                    Mark(
                        _n(x),
                        _n(top_y),
                        _n(max(bar_w - 1, 0.5)),
                        _n(TOP + plot_h - top_y),
                        f"{one.name}, {labels[i]}: {value_format(value)}",
                    )
                )
        drawn.append(shape)

    ticks = []
    steps = round(top / step)
    for i in range(steps + 1):
        value = i * step
        ticks.append(Tick(_n(y(value)), _tick_text(value, step, value_format, integers)))

    # Labels sit above their line, at the right end; every other one at the left end, so that
    # two limits close together (0.1% and 0.3% on a scale of 6%) do not write over each other.
    lines = [
        (_n(y(r.value)), r.label, _n(y(r.value) - 4), "end" if i % 2 == 0 else "start")
        for i, r in enumerate(sorted(references, key=lambda r: -r.value))
    ]
    rows = [
        (label, ["—" if s.values[i] is None else value_format(s.values[i]) for s in series])
        for i, label in enumerate(labels)
    ]
    return Chart(
        id=f"chart-{next(_ids)}",
        kind=kind,
        title=title,
        description=description,
        labels=labels,
        series=drawn,
        y_ticks=ticks,
        x_ticks=_x_ticks(tick_labels, centres),
        references=lines,
        rows=rows,
        value_label=value_label,
        empty=not labels or not series or not values,
    )


def line_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    tick_labels: Sequence[str] | None = None,
    value_format: Callable[[float], str] = format_count,
    value_label: str = "",
    references: Sequence[ReferenceLine] = (),
) -> Chart:
    """A line per series over the labels (time, usually), with optional reference lines."""
    return _chart(
        "line",
        title=title,
        description=description,
        labels=labels,
        series=series,
        tick_labels=tick_labels,
        value_format=value_format,
        value_label=value_label,
        references=references,
    )


def bar_chart(
    *,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    tick_labels: Sequence[str] | None = None,
    value_format: Callable[[float], str] = format_count,
    value_label: str = "",
    references: Sequence[ReferenceLine] = (),
) -> Chart:
    """Grouped bars: one group per label, one bar per series."""
    return _chart(
        "bar",
        title=title,
        description=description,
        labels=labels,
        series=series,
        tick_labels=tick_labels,
        value_format=value_format,
        value_label=value_label,
        references=references,
    )
