"""Hypothesis properties of the engine: conversions round-trip, a table equals its rows, and grades
never improve as a count falls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import default_ruleset
from labservice.core.units import from_canonical, to_canonical
from tests.hypothesis_profiles import examples

RS = default_ruleset()
UNIT_CASES = [
    (a, s.unit) for a, info in RS.analytes.items() for s in RS.units.spellings(info.unit_kind) if s.factor is not None
]


@given(case=st.sampled_from(UNIT_CASES), value=st.floats(min_value=1e-6, max_value=1e6))
def test_unit_conversion_round_trips(case, value):
    analyte, unit = case
    canonical = to_canonical(RS, analyte, np.array([value]), unit)
    back = from_canonical(RS, analyte, canonical, unit)
    assert math.isclose(back[0], value, rel_tol=1e-12)


def maybe(strategy):
    return st.one_of(st.just(np.nan), strategy)


cbc_rows = st.fixed_dictionaries(
    {
        "platelets": maybe(st.floats(0, 1500)),
        "wbc": maybe(st.floats(0, 60)),
        "neutrophils": maybe(st.floats(0, 30)),
        "lymphocytes": maybe(st.floats(0, 10)),
        "hemoglobin": maybe(st.floats(2, 22)),
        "reticulocytes": maybe(st.floats(0, 300)),
        "sex": st.sampled_from(["female", "male", "unknown"]),
        "age_years": maybe(st.floats(0, 100)),
        "pregnant": st.sampled_from([np.nan, 0.0, 1.0]),
        "pregnancy_trimester": st.sampled_from([np.nan, 1.0, 2.0, 3.0]),
        "duffy_null": st.sampled_from([np.nan, 0.0, 1.0]),
        "fever": st.sampled_from([np.nan, 0.0, 1.0]),
        "platelet_clumps": st.sampled_from([np.nan, 0.0, 1.0]),
        "marrow_cellularity": maybe(st.floats(0, 100)),
        "marrow_residual": maybe(st.floats(0, 100)),
        "ctcae_version": st.sampled_from(["5.0", "6.0"]),
        "reticulocyte_method": st.sampled_from(["automated", "manual", ""]),
    }
)
lesion = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["", "petechiae", "purpura", "ecchymosis"]),
        "size_mm": maybe(st.floats(0.1, 40)),
        "blanching": st.sampled_from([np.nan, 0.0, 1.0]),
        "palpable": st.sampled_from([np.nan, 0.0, 1.0]),
    }
)


def _lesion_table(per_row: list[list[dict]], offset: int = 0) -> dict:
    rows = [(i + offset, item) for i, items in enumerate(per_row) for item in items]
    return {
        "row": np.array([i for i, _ in rows], dtype=np.int64),
        "type": np.array([item["type"] for _, item in rows], dtype=object),
        "size_mm": np.array([item["size_mm"] for _, item in rows], dtype=float),
        "blanching": np.array([item["blanching"] for _, item in rows], dtype=float),
        "palpable": np.array([item["palpable"] for _, item in rows], dtype=float),
    }


def _comparable(answer: dict) -> dict:
    answer = dict(answer)
    answer.pop("id")
    return answer


@settings(max_examples=examples(60), deadline=None)
@given(rows=st.lists(cbc_rows, min_size=1, max_size=12), lesions=st.data())
def test_interpreting_a_table_equals_interpreting_each_row(rows, lesions):
    per_row = [lesions.draw(st.lists(lesion, max_size=2)) for _ in rows]
    frame = pd.DataFrame(rows)
    whole = render_interpretations(interpret_cbc_table(frame, _lesion_table(per_row), ruleset=RS))
    for i, row in enumerate(rows):
        single = render_interpretations(
            interpret_cbc_table(pd.DataFrame([row]), _lesion_table([per_row[i]]), ruleset=RS)
        )
        assert _comparable(whole[i]) == _comparable(single[0])


@settings(max_examples=examples(80), deadline=None)
@given(
    analyte=st.sampled_from(["platelets", "neutrophils", "wbc", "lymphocytes", "hemoglobin"]),
    values=st.lists(st.floats(0.01, 1200), min_size=2, max_size=40),
    sex=st.sampled_from(["female", "male", "unknown"]),
    age=maybe(st.floats(1, 100)),
    version=st.sampled_from(["5.0", "6.0"]),
)
def test_grades_never_improve_as_a_count_falls(analyte, values, sex, age, version):
    values = sorted(values, reverse=True)
    frame = pd.DataFrame({analyte: values, "sex": sex, "age_years": age, "ctcae_version": version})
    result = interpret_cbc_table(frame, ruleset=RS)
    grades = result.grades[analyte]
    assert (np.diff(grades.astype(int)) >= 0).all()


@settings(max_examples=examples(60), deadline=None)
@given(
    analyte_and_top=st.sampled_from([("platelets", 440.0), ("neutrophils", 1.9), ("hemoglobin", 16.0)]),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30),
    sex=st.sampled_from(["female", "male", "unknown"]),
)
def test_urgency_never_falls_as_a_low_count_falls(analyte_and_top, fractions, sex):
    """Below the critical-high limits, a lower count never gets a lower urgency (§9)."""
    analyte, top = analyte_and_top
    values = sorted((0.01 + f * top for f in fractions), reverse=True)
    result = interpret_cbc_table(pd.DataFrame({analyte: values, "sex": sex}), ruleset=RS)
    assert (np.diff(result.urgency.astype(int)) >= 0).all()
