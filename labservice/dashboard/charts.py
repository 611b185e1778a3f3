"""Inline SVG trend charts for the patient page: pure functions, no Flask, no request.

A chart is one analyte's values over time with horizontal threshold lines. Every number and label it
draws comes from the caller (the view reads the thresholds from the ruleset), so nothing here is a
clinical rule. Text is escaped here: the SVG is inserted into the page as markup.

What a clinician needs to trust it (issue 14 item 10):
- the reference interval in use as a shaded band, its lower and upper limits labelled;
- an abnormal value drawn in another colour **and** another shape (a triangle pointing down for a low
  value, up for a high one; a larger, outlined mark for a critical one), never colour alone;
- dates along the time axis (up to six, evenly spaced), and each value written beside its point, so
  nothing needs a hover (a phone has none);
- a log axis where low values matter as much as high ones (platelets: 12 and 31 are far apart on it,
  while a linear axis up to 450 puts them a few pixels apart).
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


#: How a flag (HL7 v3 ObservationInterpretation) is drawn and said.
FLAG_WORDS = {"L": "low", "H": "high", "LL": "critically low", "HH": "critically high"}
#: Up to this many points get their value written beside them; beyond, the latest, lowest and highest.
LABEL_ALL_UP_TO = 12
#: At most this many dates along the time axis.
DATE_TICKS = 6
#: Width of a date label ("2026-11-08") in viewBox units at the chart's 13 px type (about 72), with room to spare,
#: and the least space between two labels: dates must never run into each other (issue 14 item 10).
DATE_LABEL_WIDTH = 78.0
DATE_LABEL_GAP = 6.0


@dataclass(frozen=True)
class Point:
    """One value at one collection time (canonical unit), with its flag when it was interpreted."""

    at: datetime
    value: float
    flag: str | None = None  # N, L, H, LL, HH


@dataclass(frozen=True)
class Band:
    """The reference interval in use: shaded between `low` and `high`; `label` says whose it is."""

    low: float
    high: float
    label: str = "reference interval"


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


@dataclass(frozen=True)
class LogScale:
    """A log10 value axis from `low` to `high` (both powers of ten times 1, 2 or 5), for counts whose low
    values matter: each factor of ten takes the same height."""

    low: float
    high: float
    frame: Frame

    def y(self, value: float) -> float:
        value = max(value, self.low)
        span = math.log10(self.high) - math.log10(self.low)
        fraction = (math.log10(value) - math.log10(self.low)) / span if span else 0.5
        return self.frame.plot_bottom - fraction * (self.frame.plot_bottom - self.frame.plot_top)

    def ticks(self) -> list[float]:
        """1, 2 and 5 times each power of ten between low and high."""
        out = []
        power = 10.0 ** math.floor(math.log10(self.low))
        while power <= self.high * (1 + 1e-9):
            for step in (1.0, 2.0, 5.0):
                tick = round(step * power, 10)
                if self.low * (1 - 1e-9) <= tick <= self.high * (1 + 1e-9):
                    out.append(tick)
            power *= 10
        return out


def log_scale(values: Sequence[float], lines: Sequence[Line], frame: Frame = Frame()) -> LogScale:
    """From a 1-2-5 step at or below the lowest positive value or line to one at or above the highest."""
    positive = [v for v in [*values, *(line.value for line in lines)] if v > 0] or [1.0]
    return LogScale(_step_at_or_below(min(positive)), _step_at_or_above(max(positive) * 1.1), frame)


def _step_at_or_below(value: float) -> float:
    power = 10.0 ** math.floor(math.log10(value))
    return max(round(step * power, 12) for step in (1.0, 2.0, 5.0) if step * power <= value * (1 + 1e-12))


def _step_at_or_above(value: float) -> float:
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return round(step * power, 12)
    return round(10 * power, 12)  # pragma: no cover


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


AnyScale = Scale | LogScale


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
    chart_id: str,
    title: str,
    unit: str,
    points: Sequence[Point],
    lines: Sequence[Line],
    *,
    frame: Frame = Frame(),
    band: Band | None = None,
    log: bool = False,
) -> str:
    """An accessible inline SVG: role="img" with an aria-label summary and a <desc> listing every value and
    its flag; each point carries a <title> tooltip, its value written beside it, and a shape by its flag; each
    threshold line its value and rule key as data attributes; the reference band its limits."""
    ordered = sorted(points, key=lambda p: _utc(p.at))
    values = [p.value for p in ordered]
    extent = [*lines, *((Line(band.low, "", ""), Line(band.high, "", "")) if band else ())]
    scale: AnyScale = log_scale(values, extent, frame) if log else value_scale(values, extent, frame)
    xs = x_positions([p.at for p in ordered], frame)
    label = summary(title, unit, ordered, lines)
    if band is not None:
        label += f" Shaded: {band.label} {number(band.low)} to {number(band.high)}."
    if log:
        label += " Logarithmic axis."
    desc = "; ".join(f"{when(p.at)}: {number(p.value)} {unit}{_flag_words(p.flag)}" for p in ordered)
    ident = escape(chart_id)
    out = [
        f'<svg id="{ident}" class="chart{" log" if log else ""}" role="img" '
        f'viewBox="0 0 {frame.width:g} {frame.height:g}" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(label)}" aria-describedby="{ident}-desc" '
        f'data-low="{scale.low:g}" data-high="{scale.high:g}" data-scale="{"log" if log else "linear"}">',
        f'<title id="{ident}-title">{escape(title)} ({escape(unit)})</title>',
        f'<desc id="{ident}-desc">{escape(desc or "No values to plot.")}</desc>',
        _band(scale, frame, band) if band is not None else "",
        _axes(scale, frame, unit),
        _threshold_lines(scale, frame, lines),
    ]
    if ordered:
        out.append(_time_labels(ordered, xs, frame))
        coords = " ".join(f"{x:.2f},{scale.y(p.value):.2f}" for x, p in zip(xs, ordered, strict=True))
        if len(ordered) > 1:
            out.append(f'<polyline class="trend" points="{coords}"/>')
        labelled = _labelled(ordered)
        out.append('<g class="points">')
        for i, (x, point) in enumerate(zip(xs, ordered, strict=True)):
            tip = f"{when(point.at)}: {number(point.value)} {unit}{_flag_words(point.flag)}"
            out.append(_mark(x, scale.y(point.value), point, tip))
            if i in labelled:
                text = number(point.value) + (f" {point.flag}" if point.flag and point.flag != "N" else "")
                out.append(
                    f'<text class="point-value{_flag_class(point.flag)}" x="{x:.2f}" '
                    f'y="{scale.y(point.value) - 9:.2f}" text-anchor="middle" aria-hidden="true">{escape(text)}</text>'
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


def _flag_words(flag: str | None) -> str:
    return f" ({FLAG_WORDS[flag]})" if flag in FLAG_WORDS else ""


def _flag_class(flag: str | None) -> str:
    if flag in ("LL", "HH"):
        return f" abnormal critical flag-{flag}"
    if flag in ("L", "H"):
        return f" abnormal flag-{flag}"
    return ""


def _mark(x: float, y: float, point: Point, tip: str) -> str:
    """A circle for a value inside its range (or not flagged); a triangle pointing down for low, up for high;
    larger and outlined for critical. Shape and colour both say it."""
    common = f'data-value="{number(point.value)}" data-flag="{escape(point.flag or "")}"'
    title = f"<title>{escape(tip)}</title>"
    flag = point.flag
    if flag in ("L", "LL", "H", "HH"):
        size = 7.5 if flag in ("LL", "HH") else 6.0
        if flag in ("L", "LL"):
            corners = [(x - size, y - size * 0.6), (x + size, y - size * 0.6), (x, y + size)]
        else:
            corners = [(x - size, y + size * 0.6), (x + size, y + size * 0.6), (x, y - size)]
        path = " ".join(f"{cx:.2f},{cy:.2f}" for cx, cy in corners)
        return f'<polygon class="point{_flag_class(flag)}" points="{path}" {common}>{title}</polygon>'
    return f'<circle class="point" cx="{x:.2f}" cy="{y:.2f}" r="4.5" {common}>{title}</circle>'


def _labelled(points: Sequence[Point]) -> set[int]:
    """Which points get their value written: all of a few; else the latest, the lowest and the highest."""
    if len(points) <= LABEL_ALL_UP_TO:
        return set(range(len(points)))
    values = [p.value for p in points]
    return {len(points) - 1, values.index(min(values)), values.index(max(values))}


def _band(scale: AnyScale, frame: Frame, band: Band) -> str:
    top, bottom = scale.y(band.high), scale.y(band.low)
    return (
        f'<g class="reference" data-low="{number(band.low)}" data-high="{number(band.high)}">'
        f'<rect class="reference-band" x="{frame.plot_left:.2f}" y="{top:.2f}" '
        f'width="{frame.plot_right - frame.plot_left:.2f}" height="{max(bottom - top, 0.5):.2f}"/>'
        f'<text class="reference-label" x="{frame.plot_left + 4:.2f}" y="{top + 12:.2f}">'
        f"{escape(band.label)} {escape(number(band.low))}–{escape(number(band.high))}</text></g>"
    )


def _axes(scale: AnyScale, frame: Frame, unit: str) -> str:
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


def _threshold_lines(scale: AnyScale, frame: Frame, lines: Sequence[Line]) -> str:
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


def date_ticks(points: Sequence[Point], xs: Sequence[float], most: int = DATE_TICKS) -> list[tuple[float, str]]:
    """(x, day) of up to `most` dates along the axis: the first and the last, and points evenly between, each day
    once, no two labels overlapping. The labels are drawn as `_time_labels` anchors them (the first starting at its
    x, the last ending at it, the others centred), each DATE_LABEL_WIDTH wide; when the first and the last would
    overlap, only the last (the newest) is kept."""
    days = [f"{_utc(p.at):%Y-%m-%d}" for p in points]
    if not days:
        return []
    if len(set(days)) == 1:
        return [((xs[0] + xs[-1]) / 2, days[-1])]
    width = DATE_LABEL_WIDTH
    last_left = xs[-1] - width  # the last label ends at its x
    if last_left < xs[0] + width + DATE_LABEL_GAP:
        return [(xs[-1], days[-1])]
    chosen = [(xs[0], days[0])]
    previous_right = xs[0] + width  # the first label starts at its x
    picks = sorted({round(i * (len(points) - 1) / (most - 1)) for i in range(most)})
    for i in picks:
        if days[i] in (days[0], days[-1]) or any(day == days[i] for _, day in chosen):
            continue
        left, right = xs[i] - width / 2, xs[i] + width / 2
        if left >= previous_right + DATE_LABEL_GAP and right + DATE_LABEL_GAP <= last_left:
            chosen.append((xs[i], days[i]))
            previous_right = right
    chosen.append((xs[-1], days[-1]))
    return chosen


def _time_labels(points: Sequence[Point], xs: Sequence[float], frame: Frame) -> str:
    """Dates under the axis, with a tick mark each: the first, the last and some between."""
    y = frame.plot_bottom + 18
    ticks = date_ticks(points, xs)
    parts = ['<g class="time-axis" aria-hidden="true">']
    for n, (x, day) in enumerate(ticks):
        anchor = "middle" if len(ticks) == 1 else ("start" if n == 0 else "end" if n == len(ticks) - 1 else "middle")
        parts.append(
            f'<line class="date-tick" x1="{x:.2f}" x2="{x:.2f}" y1="{frame.plot_bottom:.2f}" '
            f'y2="{frame.plot_bottom + 4:.2f}"/>'
        )
        parts.append(f'<text class="tick date" x="{x:.2f}" y="{y:.2f}" text-anchor="{anchor}">{day}</text>')
    parts.append("</g>")
    return "".join(parts)


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC (SQLite returns naive datetimes)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
