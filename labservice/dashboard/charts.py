"""Inline SVG trend charts for the patient page: pure functions, no Flask, no request.

A chart is one analyte's values over time with horizontal threshold lines. Every number and label it
draws comes from the caller (the view reads the thresholds from the ruleset), so nothing here is a
clinical rule. Text is escaped here: the SVG is inserted into the page as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

#: Smallest vertical distance between two threshold labels (px), so close lines stay readable.
LABEL_GAP = 13.0
#: Mantissas of the "nice" upper bounds and tick steps of the value axis.
NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Point:
    """One value at one collection time (canonical unit)."""

    at: datetime
    value: float


@dataclass(frozen=True)
class Line:
    """A horizontal threshold line: where, what it means, and the rule key it comes from."""

    value: float
    label: str
    key: str


@dataclass(frozen=True)
class Frame:
    """The chart's size (viewBox units) and the margins around the plot area."""

    width: float = 640.0
    height: float = 240.0
    left: float = 48.0
    right: float = 176.0  # room for the threshold labels
    top: float = 16.0
    bottom: float = 36.0

    @property
    def plot_left(self) -> float:
        return self.left

    @property
    def plot_right(self) -> float:
        return self.width - self.right

    @property
    def plot_top(self) -> float:
        return self.top

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom


@dataclass(frozen=True)
class Scale:
    """A linear value axis from `low` (bottom of the plot) to `high` (top)."""

    low: float
    high: float
    frame: Frame

    def y(self, value: float) -> float:
        """The y coordinate of a value (SVG y grows downwards)."""
        span = self.high - self.low
        fraction = (value - self.low) / span if span else 0.5
        return self.frame.plot_bottom - fraction * (self.frame.plot_bottom - self.frame.plot_top)

    def ticks(self) -> list[float]:
        """Tick values from low to high in nice steps (about five)."""
        step = nice_ceiling((self.high - self.low) / 5)
        count = round((self.high - self.low) / step)
        return [round(self.low + i * step, 10) for i in range(count + 1)]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value` (1 for 0 or less)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in NICE_STEPS:
        candidate = round(step * power, 12)
        if candidate >= value * (1 - 1e-12):
            return candidate
    return round(10 * power, 12)  # pragma: no cover - 10 * power always qualifies above


def value_scale(values: Sequence[float], lines: Sequence[Line], frame: Frame = Frame()) -> Scale:
    """From 0 to a nice bound above the highest value or line (10 % headroom): every line stays visible."""
    highest = max([*values, *(line.value for line in lines), 0.0])
    return Scale(0.0, nice_ceiling(highest * 1.1), frame)


def x_positions(times: Sequence[datetime], frame: Frame = Frame()) -> list[float]:
    """x of each time on a linear time axis; one time (or all equal) sits in the middle."""
    if not times:
        return []
    stamps = [_utc(t).timestamp() for t in times]
    first, last = min(stamps), max(stamps)
    left, right = frame.plot_left + 12, frame.plot_right - 12
    if last == first:
        return [(left + right) / 2] * len(stamps)
    return [left + (stamp - first) / (last - first) * (right - left) for stamp in stamps]


def number(value: float) -> str:
    """A value as people write it: 45, 1.5, 0.25 (no trailing zeros)."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def when(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def summary(title: str, unit: str, points: Sequence[Point], lines: Sequence[Line]) -> str:
    """One sentence for screen readers: how many results, over what time, latest, lowest, highest, the lines."""
    drawn = "; ".join(f"{number(line.value)} ({line.label})" for line in lines)
    lines_text = f" Lines at {drawn}." if lines else ""
    if not points:
        return f"{title} ({unit}): no results with a collection time.{lines_text}"
    ordered = sorted(points, key=lambda p: _utc(p.at))
    values = [p.value for p in ordered]
    latest = ordered[-1]
    if len(ordered) == 1:
        span = f"1 result, on {_utc(latest.at):%Y-%m-%d}"
    else:
        span = f"{len(ordered)} results from {_utc(ordered[0].at):%Y-%m-%d} to {_utc(latest.at):%Y-%m-%d}"
    return (
        f"{title} ({unit}): {span}; latest {number(latest.value)}, lowest {number(min(values))}, "
        f"highest {number(max(values))}.{lines_text}"
    )


def trend_chart(
    chart_id: str, title: str, unit: str, points: Sequence[Point], lines: Sequence[Line], *, frame: Frame = Frame()
) -> str:
    """An accessible inline SVG: role="img" with an aria-label summary and a <desc> listing every value;
    each point carries a <title> tooltip; each threshold line its value and rule key as data attributes."""
    ordered = sorted(points, key=lambda p: _utc(p.at))
    scale = value_scale([p.value for p in ordered], lines, frame)
    xs = x_positions([p.at for p in ordered], frame)
    label = summary(title, unit, ordered, lines)
    desc = "; ".join(f"{when(p.at)}: {number(p.value)} {unit}" for p in ordered) or "No values to plot."
    ident = escape(chart_id)
    out = [
        f'<svg id="{ident}" class="chart" role="img" viewBox="0 0 {frame.width:g} {frame.height:g}" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(label)}" aria-describedby="{ident}-desc" '
        f'data-low="{scale.low:g}" data-high="{scale.high:g}">',
        f'<title id="{ident}-title">{escape(title)} ({escape(unit)})</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        _axes(scale, frame, unit),
        _threshold_lines(scale, frame, lines),
    ]
    if ordered:
        out.append(_time_labels(ordered, xs, frame))
        coords = " ".join(f"{x:.2f},{scale.y(p.value):.2f}" for x, p in zip(xs, ordered, strict=True))
        if len(ordered) > 1:
            out.append(f'<polyline class="trend" points="{coords}"/>')
        out.append('<g class="points">')
        for x, point in zip(xs, ordered, strict=True):
            tip = f"{when(point.at)}: {number(point.value)} {unit}"
            out.append(
                f'<circle class="point" cx="{x:.2f}" cy="{scale.y(point.value):.2f}" r="4.5" '
                f'data-value="{number(point.value)}"><title>{escape(tip)}</title></circle>'
            )
        out.append("</g>")
    else:
        middle = (frame.plot_top + frame.plot_bottom) / 2
        out.append(
            f'<text class="empty" x="{(frame.plot_left + frame.plot_right) / 2:.2f}" y="{middle:.2f}" '
            'text-anchor="middle">No results to plot</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _axes(scale: Scale, frame: Frame, unit: str) -> str:
    parts = ['<g class="axis" aria-hidden="true">']
    for tick in scale.ticks():
        y = scale.y(tick)
        parts.append(
            f'<line class="grid" x1="{frame.plot_left:.2f}" x2="{frame.plot_right:.2f}" y1="{y:.2f}" y2="{y:.2f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{frame.plot_left - 6:.2f}" y="{y + 4:.2f}" '
            f'text-anchor="end">{escape(number(tick))}</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{frame.plot_left:.2f}" x2="{frame.plot_right:.2f}" '
        f'y1="{frame.plot_bottom:.2f}" y2="{frame.plot_bottom:.2f}"/>'
    )
    parts.append(
        f'<text class="unit" x="{frame.plot_left:.2f}" y="{frame.plot_top - 5:.2f}" '
        f'text-anchor="start">{escape(unit)}</text>'
    )
    parts.append("</g>")
    return "".join(parts)


def _label_positions(ys: list[float], frame: Frame) -> list[float]:
    """Label y for each line y: in order, at least LABEL_GAP apart, kept inside the frame."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    previous = -math.inf
    for i in order:
        placed[i] = max(ys[i] + 4, previous + LABEL_GAP)
        previous = placed[i]
    overflow = max([*placed, 0.0]) - (frame.height - 4)
    if overflow > 0:
        placed = [y - overflow for y in placed]
    return placed


def _threshold_lines(scale: Scale, frame: Frame, lines: Sequence[Line]) -> str:
    ys = [scale.y(line.value) for line in lines]
    labels = _label_positions(ys, frame)
    parts = ['<g class="thresholds">']
    for line, y, label_y in zip(lines, ys, labels, strict=True):
        key = escape(line.key)
        parts.append(
            f'<line class="threshold" data-key="{key}" data-value="{number(line.value)}" '
            f'x1="{frame.plot_left:.2f}" x2="{frame.plot_right:.2f}" y1="{y:.2f}" y2="{y:.2f}"/>'
        )
        parts.append(
            f'<text class="threshold-label" data-key="{key}" x="{frame.plot_right + 6:.2f}" '
            f'y="{label_y:.2f}">{escape(number(line.value))} {escape(line.label)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _time_labels(points: Sequence[Point], xs: Sequence[float], frame: Frame) -> str:
    """The first and the last collection date under the axis (one label when they are the same day)."""
    y = frame.plot_bottom + 18
    first, last = points[0], points[-1]
    parts = ['<g class="time-axis" aria-hidden="true">']
    first_day, last_day = f"{_utc(first.at):%Y-%m-%d}", f"{_utc(last.at):%Y-%m-%d}"
    if first_day == last_day:
        middle = (xs[0] + xs[-1]) / 2
        parts.append(f'<text class="tick" x="{middle:.2f}" y="{y:.2f}" text-anchor="middle">{last_day}</text>')
    else:
        parts.append(f'<text class="tick" x="{xs[0]:.2f}" y="{y:.2f}" text-anchor="start">{first_day}</text>')
        parts.append(f'<text class="tick" x="{xs[-1]:.2f}" y="{y:.2f}" text-anchor="end">{last_day}</text>')
    parts.append("</g>")
    return "".join(parts)


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC (SQLite returns naive datetimes)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
