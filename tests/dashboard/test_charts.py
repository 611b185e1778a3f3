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
PLATELET_LINES = [Line(150, "thrombocytopenia", "thrombocytopenia"),
                  Line(50, "marrow-failure range", "marrow_failure_platelets"),
                  Line(20, "critical", "critical_platelets_low")]


def at(day: int, hour: int = 8) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


@pytest.mark.parametrize(("value", "high", "y"), [
    (0, 250, BOTTOM),
    (250, 250, TOP),
    (150, 250, 204 - 150 / 250 * 188),  # 91.2
    (50, 250, 204 - 50 / 250 * 188),  # 166.4
    (20, 250, 204 - 20 / 250 * 188),  # 188.96
    (1.5, 5, 204 - 1.5 / 5 * 188),  # 147.6
    (0.5, 5, 204 - 0.5 / 5 * 188),  # 185.2
    (12, 20, 204 - 12 / 20 * 188),  # 91.2
])
def test_a_value_maps_to_its_y(value, high, y):
    assert Scale(0, high, Frame()).y(value) == pytest.approx(y)


def test_higher_values_are_higher_on_the_page():
    scale = Scale(0, 500, Frame())
    assert scale.y(150) < scale.y(50) < scale.y(20) < scale.y(0)


@pytest.mark.parametrize(("value", "expected"), [
    (0.4, 0.5), (0.5, 0.5), (1.1, 2), (2.2, 2.5), (3.3, 5), (7, 10), (10, 10), (15.4, 20), (165, 200),
    (231, 250), (462, 500), (0, 1), (-3, 1),
])
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
    svg = parse(trend_chart("chart-platelets", "Platelets", "×10⁹/L", [Point(at(1), 210), Point(at(3), 45)],
                            PLATELET_LINES))
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
    svg = parse(trend_chart("chart-neutrophils", "Neutrophils", "×10⁹/L",
                            [Point(at(1), 3.1), Point(at(2), 0.4)],
                            [Line(1.5, "neutropenia", "neutropenia"),
                             Line(0.5, "critical", "critical_neutrophils_low")]))
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == ("Neutrophils (×10⁹/L): 2 results from 2026-11-01 to 2026-11-02; latest 0.4, "
                                     "lowest 0.4, highest 3.1. Lines at 1.5 (neutropenia); 0.5 (critical).")
    assert svg.get("aria-describedby") == "chart-neutrophils-desc"
    desc = svg.find("desc")
    assert desc.get("id") == "chart-neutrophils-desc"
    assert desc.text == "2026-11-01 08:00 UTC: 3.1 ×10⁹/L; 2026-11-02 08:00 UTC: 0.4 ×10⁹/L"
    assert svg.find("title").text == "Neutrophils (×10⁹/L)"


def test_a_chart_with_no_values_says_so():
    svg = parse(trend_chart("c", "Haemoglobin", "g/dL", [], [Line(12, "anaemia cut-off", "anemia_cutoffs.csv")]))
    assert not list(svg.iter("circle"))
    assert "No results to plot" in "".join(svg.itertext())
    assert svg.get("aria-label") == ("Haemoglobin (g/dL): no results with a collection time. "
                                     "Lines at 12 (anaemia cut-off).")
    assert [line.get("data-value") for line in svg.iter("line") if line.get("class") == "threshold"] == ["12"]


def test_one_result_is_placed_in_the_middle():
    assert summary("Platelets", "×10⁹/L", [Point(at(4), 120)], []) == (
        "Platelets (×10⁹/L): 1 result, on 2026-11-04; latest 120, lowest 120, highest 120.")
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
