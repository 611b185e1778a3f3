"""Issue 14 item 10, "one spelling of units on a page": the engine's texts write 10^9/L plainly (`x10^9/L`, `10^9/L`)
or as the rule tables spell it in UCUM (`10*9/L`, e.g. a critical value's "(< 20 10*9/L)"); the dashboard writes
every one of them as its headers do, ×10⁹/L (and ×10¹²/L), through the `page_units` filter."""

from __future__ import annotations

import pytest

from labservice.dashboard.views import UNIT_TEXT, units_as_on_the_page


@pytest.mark.parametrize(
    ("engine", "page"),
    [
        ("platelets 12 (< 20 10*9/L) [S6]", "platelets 12 (< 20 ×10⁹/L) [S6]"),
        ("Platelets 35 x10^9/L (2026-11-20)", "Platelets 35 ×10⁹/L (2026-11-20)"),
        ("neutrophils 0.4 10^9/L", "neutrophils 0.4 ×10⁹/L"),
        ("RBC 3.1 x10^12/L, 3.1 10*12/L", "RBC 3.1 ×10¹²/L, 3.1 ×10¹²/L"),
        ("haemoglobin 9.5 g/dL", "haemoglobin 9.5 g/dL"),
        (None, ""),
    ],
)
def test_every_spelling_of_the_engine_becomes_the_headers_one(engine, page):
    assert units_as_on_the_page(engine) == page


def test_the_headers_spelling_is_the_one_used():
    assert UNIT_TEXT["10*9/L"] == "×10⁹/L" and UNIT_TEXT["10*12/L"] == "×10¹²/L"
    assert units_as_on_the_page(units_as_on_the_page("5 x10^9/L")) == "5 ×10⁹/L"  # applying it twice changes nothing
