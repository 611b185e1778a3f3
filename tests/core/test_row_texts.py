"""Texts for a whole table (labservice/core/row_texts.py): the findings in words and the one-line summary.

Issue 14 item 5: a spreadsheet row says in words what it found, beside the codes, and in one line which counts
were outside their range. Expected texts come from the rule tables' own words (findings.csv titles, analytes.csv
labels) and the rules' thresholds; the property tests check that the words and the numbers are those the JSON
answer writes for the same row (the renderer is the reference: one wording, on every path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labservice.core.families import combined, critical
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import _Renderer, render_interpretations
from labservice.core.row_texts import findings_text, summary_lines
from labservice.core.ruleset import default_ruleset
from labservice.core.vocabulary import FINDING
from tests.core.test_properties import _lesion_table, cbc_rows, lesion
from tests.hypothesis_profiles import examples

WORDS = {"L": "low", "H": "high", "LL": "critically low", "HH": "critically high"}
#: Rows that make the two titles a family words per CBC: clinical-rules §11 v2 (a critical low count during
#: myelosuppressive treatment is a possible nadir) and §6 v2 (blasts: the marrow-failure range without naming
#: aplastic anaemia).
treated = st.fixed_dictionaries(
    {
        "myelosuppressive_therapy": st.sampled_from([np.nan, 0.0, 1.0]),
        "blasts_percent": st.sampled_from([np.nan, 0.0, 5.0]),
    }
)


@settings(max_examples=examples(60), deadline=None)
@given(rows=st.lists(st.tuples(cbc_rows, treated), min_size=1, max_size=12), data=st.data())
def test_words_and_numbers_are_those_of_the_json_answer(rows, data):
    table = pd.DataFrame([{**cbc, **more} for cbc, more in rows])
    per_row = [data.draw(st.lists(lesion, max_size=2)) for _ in rows]
    result = interpret_cbc_table(table, _lesion_table(per_row))
    words = findings_text(result)
    lines = summary_lines(result)
    answers = render_interpretations(result)
    view = _Renderer(result)
    for i, answer in enumerate(answers):
        assert words[i] == "; ".join(f["title"] for f in answer["findings"])
        line = lines[i]
        assert line.endswith(f". Urgency {answer['urgency']}.")
        flagged = {a: v for a, v in answer["analytes"].items() if v["flag"] in ("L", "H", "LL", "HH")}
        if not flagged:
            assert line.startswith("No count outside its reference range.")
        for analyte, shown in flagged.items():
            label = result.ruleset.analytes[analyte].label
            grade = f" (CTCAE grade {shown['ctcae_grade']})" if shown["ctcae_grade"] else ""
            said = f"{label} {view.num(analyte, i)} {result.ruleset.unit_text(analyte)} {WORDS[shown['flag']]}{grade}"
            assert said + ". " in line, (said, line)


def test_the_title_masks_agree_with_the_titles_worded_per_cbc():
    """A family that words a title per CBC (`title_<code>`) gives the rows where it does (`title_rows_<code>`),
    so that a table is worded per combination: for every such finding of findings.csv, here both exist."""
    rs = default_ruleset()
    from labservice.core.families import family

    worded = [spec.code for spec in rs.finding_specs(FINDING) if hasattr(family(spec.family), f"title_{spec.code}")]
    assert set(worded) == {"critical_value", "marrow_failure_range"}
    for code in worded:
        assert hasattr(family(rs.finding(code).family), f"title_rows_{code}")
    # Neutrophils 0.3 (critical, < 0.5 §3) during myelosuppressive treatment: a possible nadir (§11 v2); the same
    # without treatment: notify now. Blasts 5 % with the marrow-failure range: no aplastic-anaemia wording (§6 v2).
    table = pd.DataFrame(
        {
            "neutrophils": [0.3, 0.3, 0.3],
            "platelets": [30.0, 30.0, 30.0],
            "hemoglobin": [9.0, 9.0, 9.0],
            "myelosuppressive_therapy": [1.0, 0.0, 0.0],
            "blasts_percent": [np.nan, np.nan, 5.0],
        }
    )
    result = interpret_cbc_table(table)
    view = _Renderer(result)
    for rows_of, code in (
        (critical.title_rows_critical_value, "critical_value"),
        (combined.title_rows_marrow_failure_range, "marrow_failure_range"),
    ):
        mask = rows_of(result)
        for i in range(result.n):
            if result.findings[code].present[i]:
                assert mask[i] == (view.title(code, i) != view.titles[code])
    words = findings_text(result)
    nadir = rs.text(rs.finding("critical_value_possible_nadir").title)
    assert nadir in words[0] and "Critical value: notify the clinician now" in words[1]
    assert "Counts in the range that prompts a marrow examination" in words[2]
    assert "aplastic" not in words[2].lower()


def test_a_summary_line_from_the_rules():
    """Platelets 45 (< 150 low, CTCAE 3: < 50-25) and neutrophils 0.4 (< 0.5 critical, CTCAE 4) for a woman of 34
    with haemoglobin 13.5 (inside 12.0-15.0): the critical count first, the urgency a new critical value asks for
    (§9: immediate). Haemoglobin is not named: it is inside its range."""
    table = pd.DataFrame(
        {
            "platelets": [45.0, 250.0],
            "neutrophils": [0.4, 3.0],
            "hemoglobin": [13.5, 14.0],
            "sex": ["female", "male"],
            "age_years": [34.0, 50.0],
        }
    )
    lines = summary_lines(interpret_cbc_table(table))
    assert lines[0] == (
        "Neutrophils 0.4 x10^9/L critically low (CTCAE grade 4). Platelets 45 x10^9/L low "
        "(CTCAE grade 3). Urgency immediate."
    )
    assert lines[1] == "No count outside its reference range. Urgency routine."


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (149.99, "149.99"),  # §1 v2: below 150, never written as 150
        (149.2, "149"),  # 3 significant figures, still below 150
        (74.96, "74.96"),  # below the CTCAE grade-2 bound 75 (ctcae.csv): not written 75.0
    ],
)
def test_summary_numbers_never_cross_a_threshold(value: float, written: str):
    result = interpret_cbc_table(pd.DataFrame({"platelets": [value], "sex": ["male"], "age_years": [40.0]}))
    assert summary_lines(result)[0].startswith(f"Platelets {written} x10^9/L low")


def test_decimal_comma_and_censored_values():
    table = pd.DataFrame(
        {"platelets": [np.nextafter(5.0, 0.0), 99.5], "sex": ["male", "male"], "age_years": [40.0, 40.0]}
    )
    censored = {"platelets": np.array(["<5", None], dtype=object)}
    lines = summary_lines(interpret_cbc_table(table), ",", censored)
    assert lines[0] == "Platelets <5 x10^9/L critically low (CTCAE grade 4). Urgency immediate."
    assert lines[1] == "Platelets 99,5 x10^9/L low (CTCAE grade 1). Urgency soon."


def test_a_large_table_is_worded_per_combination():
    """200,000 rows of five kinds: as many distinct texts as kinds (the words are made once per combination)."""
    n = 200_000
    table = pd.DataFrame(
        {
            "platelets": np.tile([12.0, 45.0, 140.0, 250.0, np.nan], n // 5),
            "hemoglobin": np.tile([7.5, 9.0, 13.0, 15.0, 11.0], n // 5),
            "sex": "female",
        }
    )
    result = interpret_cbc_table(table)
    words = findings_text(result)
    assert len(words) == n and len(words.categories) <= 5
    assert pd.Series(summary_lines(result)).nunique() == 5
