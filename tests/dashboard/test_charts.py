"""labservice.dashboard.charts: values map to the right y, threshold lines sit where their value is, and the
SVG is accessible (role="img", a summary in aria-label, a <desc>, a <title> tooltip per point) and escaped.

Geometry from the default Frame: the plot runs from y = 16 (top) to y = 240 - 36 = 204 (bottom), so a value
v on a 0..high axis sits at y = 204 - v / high * 188.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from labservice.dashboard.charts import (
    Frame,
    Line,
    Point,
    Scale,
    nice_ceiling,
    summary,
    trend_chart,
    value_scale,
    x_positions,
)

TOP, BOTTOM = 16.0, 204.0
PLATELET_LINES = [
    Line(150, "thrombocytopenia", "thrombocytopenia"),
    Line(50, "marrow-failure range", "marrow_failure_platelets"),
    Line(20, "critical", "critical_platelets_low"),
]


def at(day: int, hour: int = 8) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


@pytest.mark.parametrize(
    ("value", "high", "y"),
    [
        (0, 250, BOTTOM),
        (250, 250, TOP),
        (150, 250, 204 - 150 / 250 * 188),  # 91.2
        (50, 250, 204 - 50 / 250 * 188),  # 166.4
        (20, 250, 204 - 20 / 250 * 188),  # 188.96
        (1.5, 5, 204 - 1.5 / 5 * 188),  # 147.6
        (0.5, 5, 204 - 0.5 / 5 * 188),  # 185.2
        (12, 20, 204 - 12 / 20 * 188),  # 91.2
    ],
)
def test_a_value_maps_to_its_y(value, high, y):
    assert Scale(0, high, Frame()).y(value) == pytest.approx(y)


def test_higher_values_are_higher_on_the_page():
    scale = Scale(0, 500, Frame())
    assert scale.y(150) < scale.y(50) < scale.y(20) < scale.y(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.4, 0.5),
        (0.5, 0.5),
        (1.1, 2),
        (2.2, 2.5),
        (3.3, 5),
        (7, 10),
        (10, 10),
        (15.4, 20),
        (165, 200),
        (231, 250),
        (462, 500),
        (0, 1),
        (-3, 1),
    ],
)
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == pytest.approx(expected)


def test_the_axis_runs_from_zero_to_a_nice_bound_above_values_and_lines():
    # Highest of values and lines 210 -> 231 with 10 % headroom -> 250.
    assert value_scale([210, 45], PLATELET_LINES) == Scale(0, 250, Frame())
    # Values all below the lowest line: the 150 line still decides the top (165 -> 200).
    assert value_scale([12, 8], PLATELET_LINES).high == 200
    # No values at all: the lines alone.
    assert value_scale([], [Line(1.5, "neutropenia", "neutropenia")]).high == 2


def test_ticks_are_even_steps_from_zero():
    assert Scale(0, 250, Frame()).ticks() == [0, 50, 100, 150, 200, 250]
    assert Scale(0, 2, Frame()).ticks() == [0, 0.5, 1, 1.5, 2]


def test_x_positions_follow_time():
    frame = Frame()
    xs = x_positions([at(1), at(2), at(5)], frame)
    left, right = frame.plot_left + 12, frame.plot_right - 12
    assert xs[0] == pytest.approx(left) and xs[2] == pytest.approx(right)
    assert xs[1] == pytest.approx(left + (right - left) / 4)  # one day of four
    assert x_positions([at(3)], frame) == [pytest.approx((left + right) / 2)]


def test_threshold_lines_are_drawn_at_their_values():
    svg = parse(
        trend_chart("chart-platelets", "Platelets", "×10⁹/L", [Point(at(1), 210), Point(at(3), 45)], PLATELET_LINES)
    )
    assert svg.get("data-high") == "250"
    lines = {line.get("data-key"): line for line in svg.iter("line") if line.get("class") == "threshold"}
    assert set(lines) == {"thrombocytopenia", "marrow_failure_platelets", "critical_platelets_low"}
    for key, value in (("thrombocytopenia", 150), ("marrow_failure_platelets", 50), ("critical_platelets_low", 20)):
        assert lines[key].get("data-value") == str(value)
        assert float(lines[key].get("y1")) == pytest.approx(204 - value / 250 * 188, abs=0.005)
        assert lines[key].get("y1") == lines[key].get("y2")  # horizontal


def test_points_carry_a_tooltip_and_sit_at_their_value():
    svg = parse(trend_chart("c", "Platelets", "×10⁹/L", [Point(at(3), 45), Point(at(1), 210)], PLATELET_LINES))
    circles = list(svg.iter("circle"))
    assert [c.get("data-value") for c in circles] == ["210", "45"]  # chronological
    assert float(circles[1].get("cy")) == pytest.approx(204 - 45 / 250 * 188, abs=0.005)
    assert circles[1].find("title").text == "2026-11-03 08:00 UTC: 45 ×10⁹/L"
    assert svg.find("polyline") is not None


def test_the_svg_is_an_image_with_a_summary_and_a_description():
    svg = parse(
        trend_chart(
            "chart-neutrophils",
            "Neutrophils",
            "×10⁹/L",
            [Point(at(1), 3.1), Point(at(2), 0.4)],
            [Line(1.5, "neutropenia", "neutropenia"), Line(0.5, "critical", "critical_neutrophils_low")],
        )
    )
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == (
        "Neutrophils (×10⁹/L): 2 results from 2026-11-01 to 2026-11-02; latest 0.4, "
        "lowest 0.4, highest 3.1. Lines at 1.5 (neutropenia); 0.5 (critical)."
    )
    assert svg.get("aria-describedby") == "chart-neutrophils-desc"
    desc = svg.find("desc")
    assert desc.get("id") == "chart-neutrophils-desc"
    assert desc.text == "2026-11-01 08:00 UTC: 3.1 ×10⁹/L; 2026-11-02 08:00 UTC: 0.4 ×10⁹/L"
    assert svg.find("title").text == "Neutrophils (×10⁹/L)"


def test_a_chart_with_no_values_says_so():
    svg = parse(trend_chart("c", "Haemoglobin", "g/dL", [], [Line(12, "anaemia cut-off", "anemia_cutoffs.csv")]))
    assert not list(svg.iter("circle"))
    assert "No results to plot" in "".join(svg.itertext())
    assert svg.get("aria-label") == (
        "Haemoglobin (g/dL): no results with a collection time. Lines at 12 (anaemia cut-off)."
    )
    assert [line.get("data-value") for line in svg.iter("line") if line.get("class") == "threshold"] == ["12"]


def test_one_result_is_placed_in_the_middle():
    assert summary("Platelets", "×10⁹/L", [Point(at(4), 120)], []) == (
        "Platelets (×10⁹/L): 1 result, on 2026-11-04; latest 120, lowest 120, highest 120."
    )
    svg = parse(trend_chart("c", "Platelets", "×10⁹/L", [Point(at(4), 120)], []))
    frame = Frame()
    (circle,) = svg.iter("circle")
    assert float(circle.get("cx")) == pytest.approx((frame.plot_left + frame.plot_right) / 2)
    assert svg.find("polyline") is None


def test_close_lines_get_labels_apart():
    svg = parse(trend_chart("c", "Platelets", "×10⁹/L", [Point(at(1), 900)], PLATELET_LINES))
    labels = sorted(float(t.get("y")) for t in svg.iter("text") if t.get("class") == "threshold-label")
    assert all(b - a >= 13 - 1e-9 for a, b in itertools.pairwise(labels))
    assert max(labels) <= Frame().height


def test_text_is_escaped():
    svg = trend_chart('x"><script>', "<b>Title</b>", "g/dL", [Point(at(1), 5)], [Line(3, "<i>line</i>", "k&")])
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg
    parse(svg)  # still well-formed


def test_naive_times_are_utc():
    naive = datetime(2026, 11, 1, 8, 0)
    svg = parse(trend_chart("c", "Platelets", "×10⁹/L", [Point(naive, 100)], []))
    assert next(svg.iter("circle")).find("title").text.startswith("2026-11-01 08:00 UTC")


# --- issue 14 item 10: charts a clinician trusts ------------------------------------------------------

from labservice.dashboard.charts import Band, LogScale, date_ticks, log_scale  # noqa: E402


def test_a_log_axis_keeps_12_and_31_apart_where_a_linear_one_does_not():
    """The issue's case: platelets 12 and 31 x10^9/L beside a normal 450. On a linear axis to 500 they are
    (31 - 12) / 500 * 188 = 7 px apart; on the log axis from 10 to 500, log10(31 / 12) / log10(50) * 188 = 45 px."""
    linear = Scale(0, 500, Frame())
    log = LogScale(10, 500, Frame())
    assert linear.y(12) - linear.y(31) == pytest.approx(7.144, abs=0.01)
    assert log.y(12) - log.y(31) == pytest.approx(45.6, abs=0.2)


def test_log_axis_bounds_and_ticks_are_1_2_5_steps():
    scale = log_scale([12, 31, 450], [Line(150, "t", "k"), Line(20, "c", "k")])
    assert (scale.low, scale.high) == (10, 500)
    assert scale.ticks() == [10, 20, 50, 100, 200, 500]
    assert scale.y(10) == pytest.approx(BOTTOM) and scale.y(500) == pytest.approx(TOP)


@pytest.mark.parametrize(
    ("flag", "shape", "classes"),
    [
        (None, "circle", {"point"}),
        ("N", "circle", {"point"}),
        ("L", "polygon", {"point", "abnormal", "flag-L"}),
        ("H", "polygon", {"point", "abnormal", "flag-H"}),
        ("LL", "polygon", {"point", "abnormal", "critical", "flag-LL"}),
        ("HH", "polygon", {"point", "abnormal", "critical", "flag-HH"}),
    ],
)
def test_abnormal_values_differ_in_shape_not_only_in_colour(flag, shape, classes):
    svg = parse(trend_chart("c", "Platelets", "x", [Point(at(1), 40, flag)], []))
    [mark] = [e for e in svg.iter() if "point" in (e.get("class") or "").split()]
    assert mark.tag.endswith(shape) and set(mark.get("class").split()) == classes


def test_a_low_triangle_points_down_and_a_high_one_up():
    def apex(flag):
        svg = parse(trend_chart("c", "t", "u", [Point(at(1), 40, flag)], []))
        [mark] = [e for e in svg.iter() if e.tag.endswith("polygon")]
        corners = [tuple(map(float, pair.split(","))) for pair in mark.get("points").split()]
        return corners[2][1] - corners[0][1]  # the third corner below (+) or above (-) the base

    assert apex("L") > 0 and apex("H") < 0


def test_every_value_is_written_beside_its_point_when_there_are_few():
    points = [Point(at(d), v, f) for d, v, f in ((1, 210, "N"), (2, 45, "L"), (3, 12, "LL"))]
    svg = parse(trend_chart("c", "t", "u", points, []))
    assert [t.text for t in svg.iter() if "point-value" in (t.get("class") or "")] == ["210", "45 L", "12 LL"]


def test_with_many_points_the_latest_lowest_and_highest_are_written():
    points = [Point(at(d), 100 + d, None) for d in range(1, 21)]
    points[5] = Point(at(6), 30, "L")
    svg = parse(trend_chart("c", "t", "u", points, []))
    assert [t.text for t in svg.iter() if "point-value" in (t.get("class") or "")] == ["30 L", "120"]


def test_the_reference_interval_is_a_shaded_band_between_its_limits():
    svg = parse(trend_chart("c", "t", "u", [Point(at(1), 100)], [], band=Band(150, 410)))
    high = float(svg.get("data-high"))  # the band's top is inside the axis: 410 + 10 % -> 500
    assert high == 500
    rect = next(e for e in svg.iter() if e.get("class") == "reference-band")
    assert float(rect.get("y")) == pytest.approx(204 - 410 / 500 * 188)
    assert float(rect.get("y")) + float(rect.get("height")) == pytest.approx(204 - 150 / 500 * 188)


def test_dates_are_labelled_along_the_axis_not_only_at_its_ends():
    points = [Point(at(d), 100) for d in range(1, 11)]
    xs = x_positions([p.at for p in points])
    ticks = date_ticks(points, xs)
    assert ticks[0][1] == "2026-11-01" and ticks[-1][1] == "2026-11-10"
    assert 3 <= len(ticks) <= 6
    assert all(b[0] - a[0] >= 60 for a, b in itertools.pairwise(ticks))


def _label_extents(ticks: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """Where each date label lies along x, anchored as the chart draws them (first: start, last: end, else middle)."""
    from labservice.dashboard.charts import DATE_LABEL_WIDTH as W

    if len(ticks) == 1:
        return [(ticks[0][0] - W / 2, ticks[0][0] + W / 2)]
    return [
        (x, x + W) if n == 0 else (x - W, x) if n == len(ticks) - 1 else (x - W / 2, x + W / 2)
        for n, (x, _) in enumerate(ticks)
    ]


@pytest.mark.parametrize(
    "days",
    [
        [1, 4, 6, 8],  # the browser test's patient: 11-06 and 11-08 ran into each other before
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        [1, 20, 21, 22],
        [1, 2],  # two days close together: the first and the last would overlap
        [1, 30],
    ],
)
def test_date_labels_never_overlap_and_the_newest_is_always_labelled(days):
    """Issue 14 item 10, dates along the axis: a "2026-11-06" running into "2026-11-08" reads as neither. Whatever the
    spacing of the CBCs, the labels drawn do not overlap, and the newest day is always one of them."""
    points = [Point(at(d), 100) for d in days]
    ticks = date_ticks(points, x_positions([p.at for p in points]))
    assert ticks[-1][1] == f"2026-11-{days[-1]:02d}"
    extents = _label_extents(ticks)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(extents)), (ticks, extents)
    assert len({day for _, day in ticks}) == len(ticks)
