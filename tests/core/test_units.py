"""Unit spellings and conversions of clinical-rules §1; unknown units and implausible values."""

from __future__ import annotations

import numpy as np
import pytest

from labservice.core.ruleset import default_ruleset
from labservice.core.units import UnitError, conversion_factor, implausibility_message, plausible_mask, to_canonical

RS = default_ruleset()

# (analyte, unit, value sent, expected canonical value) — all from clinical-rules §1.
CONVERSIONS = [
    ("platelets", "10*9/L", 45, 45),
    ("platelets", "10*3/uL", 45, 45),
    ("platelets", "10^9/L", 45, 45),
    ("platelets", "x10E9/L", 45, 45),
    ("platelets", "K/uL", 45, 45),
    ("platelets", "k/µL", 45, 45),
    ("platelets", "thou/uL", 45, 45),
    ("platelets", "giga/L", 45, 45),
    ("platelets", "giga.l-1", 45, 45),
    ("platelets", "10*3/mm3", 45, 45),
    ("platelets", "K/µL", 45, 45),
    ("platelets", "k/μL", 45, 45),
    ("platelets", "/uL", 45000, 45),
    ("platelets", "{cells}/uL", 210000, 210),
    ("platelets", "cells/uL", 45000, 45),
    ("platelets", "/mm3", 45000, 45),
    ("wbc", "{cells}/uL", 105600, 105.6),
    ("neutrophils", "/uL", 900, 0.9),
    ("rbc", "10*12/L", 4.5, 4.5),
    ("rbc", "10*6/uL", 4.5, 4.5),
    ("rbc", "M/uL", 4.5, 4.5),
    ("rbc", "m/uL", 4.5, 4.5),
    ("rbc", "tera.l-1", 4.06, 4.06),
    ("hemoglobin", "g/dL", 8.2, 8.2),
    ("hemoglobin", "g/dl", 7.2, 7.2),
    ("hemoglobin", "g/L", 82, 8.2),
    ("hemoglobin", "mmol/L", 6.206, 10.0),
    ("hemoglobin", "mmol/L", 5.0, 5.0 / 0.6206),
    ("hematocrit", "%", 42, 42),
    ("hematocrit", "L/L", 0.42, 42),
    ("reticulocytes", "10*9/L", 15, 15),
    ("reticulocytes_percent", "%", 1.2, 1.2),
    ("mcv", "fL", 90, 90),
    ("mch", "pg", 30, 30),
    ("mchc", "g/dL", 33, 33),
    ("rdw", "%", 13, 13),
]


@pytest.mark.parametrize(("analyte", "unit", "value", "expected"), CONVERSIONS)
def test_conversion_to_canonical_units(analyte, unit, value, expected):
    assert to_canonical(RS, analyte, np.array([value]), unit)[0] == pytest.approx(expected, rel=1e-9)


# Superscript powers and the multiplication sign, as spreadsheets and reports write them (issue 14 item 6):
# x10³/µL is x10^3/uL, ×10⁹/L is x10^9/L, ×10¹²/L is x10^12/L (clinical-rules §1: 10^9/L = 10^3/µL).
SUPERSCRIPT_SPELLINGS = [
    ("platelets", "x10³/µL", 45, 45),
    ("platelets", "x10³/μL", 45, 45),  # the Greek mu
    ("platelets", "×10⁹/L", 45, 45),
    ("platelets", "10³/µL", 45, 45),
    ("wbc", "x10³/µl", 2.1, 2.1),
    ("rbc", "×10¹²/L", 4.5, 4.5),
    ("rbc", "10⁶/µL", 4.5, 4.5),
]


@pytest.mark.parametrize(("analyte", "unit", "value", "expected"), SUPERSCRIPT_SPELLINGS)
def test_superscript_powers_of_ten_are_read(analyte, unit, value, expected):
    assert to_canonical(RS, analyte, np.array([value]), unit)[0] == pytest.approx(expected, rel=1e-9)


def test_a_superscript_power_is_not_read_as_another_power():
    """x10¹²/L is 10^12, never 10^1 then 2: for platelets (a 10^9 count) it is not a known unit."""
    with pytest.raises(UnitError, match="x10¹²/L"):
        conversion_factor(RS, "platelets", "x10¹²/L")


@pytest.mark.parametrize("unit", [None, ""])
def test_no_unit_means_the_canonical_unit(unit):
    assert conversion_factor(RS, "platelets", unit) == 1.0


@pytest.mark.parametrize(
    ("analyte", "unit"),
    [("platelets", "g/dL"), ("hemoglobin", "K/uL"), ("platelets", "furlongs"), ("mcv", "%"), ("rbc", "10*9/L")],
)
def test_an_unknown_unit_is_an_error_naming_analyte_and_unit(analyte, unit):
    with pytest.raises(UnitError) as raised:
        conversion_factor(RS, analyte, unit)
    assert unit in str(raised.value) and analyte in str(raised.value)


def test_rdw_in_fl_is_refused_with_the_reason():
    with pytest.raises(UnitError, match="RDW-SD"):
        conversion_factor(RS, "rdw", "fL")


# §1 plausibility: platelets > 5000, haemoglobin > 30 or <= 0, haematocrit > 100 are rejected.
PLAUSIBILITY = [
    ("platelets", 5000, True),
    ("platelets", 5000.1, False),
    ("platelets", 0, True),
    ("platelets", -1, False),
    ("hemoglobin", 30, True),
    ("hemoglobin", 30.1, False),
    ("hemoglobin", 0, False),
    ("hemoglobin", 0.1, True),
    ("hematocrit", 100, True),
    ("hematocrit", 100.1, False),
]


@pytest.mark.parametrize(("analyte", "value", "plausible"), PLAUSIBILITY)
def test_plausibility_limits(analyte, value, plausible):
    assert bool(plausible_mask(RS, analyte, np.array([float(value)]))[0]) is plausible


def test_platelets_sent_per_microlitre_without_a_unit_suggest_per_microlitre():
    message = implausibility_message(RS, "platelets", 210000, None)
    assert "did you mean /uL?" in message


def test_haemoglobin_in_g_per_litre_without_a_unit_suggests_g_per_litre():
    assert "did you mean g/L?" in implausibility_message(RS, "hemoglobin", 82, None)
