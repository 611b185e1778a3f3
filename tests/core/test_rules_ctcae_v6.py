"""§4 *v2*: CTCAE v6.0 grades for every graded analyte, v5.0 unchanged.

Expected values come from clinical-rules.md §4 (v2 lines) and its source [S24], NCI CTCAE v6.0 as
transcribed in pharmaverse/admiral `data-raw/adlb_grading/ncictcaev6.json` (commit 1b2c08ee):
- "Neutrophil count decreased": 1 = <1.5-1.0; 2 = <1.0-0.5; 3 = <0.5-0.1; 4 = <0.1, no LLN term.
- "White blood cell decreased": 1 = <LLN-3.0; 2 = <3.0-2.0; 3 = <2.0-1.0; 4 = <1.0 (as v5).
- "Anemia": 1 = <LLN-10.0; 2 = <10.0-8.0; 3 = <8.0 g/dL (as v5).
- "Thrombocytopenia": the 3/4 split at 10 (tests/core/test_rules_platelets.py).
- no "Lymphocyte count decreased" term: lymphocytes get no v6 grade, the finding stands.
Platelet v6 boundaries are in test_rules_platelets.py; v5 boundaries stay in the per-lineage files.
"""

from __future__ import annotations

import pytest

from labservice.core.ruleset import load_ruleset
from tests.core.rules_helpers import analyte, cbc, female, finding, interpret, res

P = pytest.param


@pytest.mark.parametrize(
    ("neut", "grade"),
    [
        P(2.0, None, id="§4 v2 CTCAE v6 neutrophils: 2.0 = fallback LLN, no grade"),
        P(1.8, None, id="§4 v2 CTCAE v6 neutrophils: 1.8 below LLN 2.0 but not <1.5: no v6 grade (v5 gives 1)"),
        P(1.51, None, id="§4 v2 CTCAE v6 neutrophils: 1.51 above 1.5, no grade"),
        P(1.5, None, id="§4 v2 CTCAE v6 neutrophils: 1.5 on the grade-1 bound is not below it"),
        P(1.49, 1, id="§4 v2 CTCAE v6 grade 1: <1.5-1.0 (1.49)"),
        P(1.2, 1, id="§4 v2 CTCAE v6 grade 1: ANC 1.2 (v5 gives 2; issue 13)"),
        P(1.0, 1, id="§4 v2 CTCAE v6 grade 1: 1.0 on bound"),
        P(0.99, 2, id="§4 v2 CTCAE v6 grade 2: <1.0-0.5 (0.99)"),
        P(0.5, 2, id="§4 v2 CTCAE v6 grade 2: 0.5 on bound"),
        P(0.49, 3, id="§4 v2 CTCAE v6 grade 3: <0.5-0.1 (0.49)"),
        P(0.3, 3, id="§4 v2 CTCAE v6 grade 3: ANC 0.3 (v5 gives 4; issue 13)"),
        P(0.1, 3, id="§4 v2 CTCAE v6 grade 3: 0.1 on bound"),
        P(0.09, 4, id="§4 v2 CTCAE v6 grade 4: <0.1 (0.09)"),
    ],
)
def test_ctcae_v6_neutrophil_grade(neut: float, grade: int | None) -> None:
    ans = interpret(cbc(full=True, neutrophils=neut, ctcae="6.0"))
    assert ans["ctcae_version"] == "6.0"
    assert analyte(ans, "neutrophils")["ctcae_grade"] == grade
    f = finding(ans, "neutropenia")
    if f is not None:
        assert f["grade"] == grade


@pytest.mark.parametrize(
    ("version", "grade"),
    [
        P("5.0", 1, id="§4 CTCAE v5 grade 1 = <LLN-1.5: 1.7 below the lab LLN 1.8 is grade 1"),
        P("6.0", None, id="§4 v2 CTCAE v6 has no LLN term: 1.7 below the lab LLN 1.8 has no grade"),
    ],
)
def test_neutrophil_lab_lln_counts_only_in_v5(version: str, grade: int | None) -> None:
    ans = interpret(cbc(full=True, neutrophils=res(1.7, low=1.8, high=7.5), ctcae=version))
    a = analyte(ans, "neutrophils")
    assert a["flag"] == "L"  # §2: the lab's range still sets the flag
    assert a["ctcae_grade"] == grade


@pytest.mark.parametrize(
    ("neut", "v5", "v6"),
    [
        P(1.2, 2, 1, id="§4: ANC 1.2 is v5 grade 2, v6 grade 1"),
        P(0.3, 4, 3, id="§4: ANC 0.3 is v5 grade 4, v6 grade 3"),
        P(0.05, 4, 4, id="§4: ANC 0.05 is grade 4 in both"),
    ],
)
def test_v5_neutrophil_grades_unchanged_beside_v6(neut: float, v5: int, v6: int) -> None:
    assert analyte(interpret(cbc(full=True, neutrophils=neut)), "neutrophils")["ctcae_grade"] == v5
    assert analyte(interpret(cbc(full=True, neutrophils=neut, ctcae="6.0")), "neutrophils")["ctcae_grade"] == v6


@pytest.mark.parametrize(
    ("wbc", "grade"),
    [
        P(4.0, None, id="§4 v2 CTCAE v6 WBC: 4.0 = LLN, no grade"),
        P(3.99, 1, id="§4 v2 CTCAE v6 WBC grade 1: <LLN-3.0 (3.99)"),
        P(3.0, 1, id="§4 v2 CTCAE v6 WBC grade 1: 3.0 on bound"),
        P(2.99, 2, id="§4 v2 CTCAE v6 WBC grade 2: <3.0-2.0 (2.99)"),
        P(2.0, 2, id="§4 v2 CTCAE v6 WBC grade 2: 2.0 on bound"),
        P(1.99, 3, id="§4 v2 CTCAE v6 WBC grade 3: <2.0-1.0 (1.99)"),
        P(1.0, 3, id="§4 v2 CTCAE v6 WBC grade 3: 1.0 on bound"),
        P(0.99, 4, id="§4 v2 CTCAE v6 WBC grade 4: <1.0 (0.99)"),
    ],
)
def test_ctcae_v6_wbc_grade_as_v5(wbc: float, grade: int | None) -> None:
    ans = interpret(cbc(full=True, wbc=wbc, ctcae="6.0"))
    assert analyte(ans, "wbc")["ctcae_grade"] == grade
    f = finding(ans, "leukopenia")
    if f is not None:
        assert f["grade"] == grade


@pytest.mark.parametrize(
    ("hb", "grade"),
    [
        P(12.0, None, id="§4 v2 CTCAE v6 anaemia: female LLN 12.0, no grade"),
        P(11.99, 1, id="§4 v2 CTCAE v6 anaemia grade 1: <LLN-10.0 (11.99)"),
        P(10.0, 1, id="§4 v2 CTCAE v6 anaemia grade 1: 10.0 on bound"),
        P(9.99, 2, id="§4 v2 CTCAE v6 anaemia grade 2: <10.0-8.0 (9.99)"),
        P(8.0, 2, id="§4 v2 CTCAE v6 anaemia grade 2: 8.0 on bound"),
        P(7.99, 3, id="§4 v2 CTCAE v6 anaemia grade 3: <8.0 (7.99)"),
    ],
)
def test_ctcae_v6_hemoglobin_grade_as_v5(hb: float, grade: int | None) -> None:
    ans = interpret(cbc(female(40), full=True, hemoglobin=hb, ctcae="6.0"))
    assert analyte(ans, "hemoglobin")["ctcae_grade"] == grade
    f = finding(ans, "anemia")
    if f is not None:
        assert f["grade"] == grade


@pytest.mark.parametrize(
    "lym",
    [
        P(0.99, id="§4 v2: lymphocytes 0.99 (v5 grade 1) get no v6 grade"),
        P(0.79, id="§4 v2: lymphocytes 0.79 (v5 grade 2) get no v6 grade"),
        P(0.49, id="§4 v2: lymphocytes 0.49 (v5 grade 3) get no v6 grade"),
        P(0.19, id="§4 v2: lymphocytes 0.19 (v5 grade 4) get no v6 grade"),
    ],
)
def test_lymphocytes_not_graded_under_v6(lym: float) -> None:
    ans = interpret(cbc(full=True, lymphocytes=lym, ctcae="6.0"))
    assert analyte(ans, "lymphocytes")["ctcae_grade"] is None
    f = finding(ans, "lymphopenia")
    assert f is not None  # §4 v2: "the finding itself still stands"
    assert f["grade"] is None
    # §4 v2: "under v6 the grade is null and the answer says why"
    assert "CTCAE v6.0 has no Lymphocytes term" in f["detail"]
    assert "not graded" in f["detail"]


def test_lymphopenia_still_graded_under_v5() -> None:
    ans = interpret(cbc(full=True, lymphocytes=0.49))
    assert analyte(ans, "lymphocytes")["ctcae_grade"] == 3  # §4 v5 grade 3: <0.5-0.2
    assert "has no" not in finding(ans, "lymphopenia")["detail"]


def test_v6_grade_cites_the_v6_source() -> None:
    # §4 v2 grades are cited to [S24] (CTCAE v6.0), a tag of its own in sources.csv
    f = finding(interpret(cbc(full=True, neutrophils=0.3, ctcae="6.0")), "neutropenia")
    rs = load_ruleset()
    v6_tags = {tag for r in rs.ctcae if r.version == "6.0" for tag in r.sources}
    v5_tags = {tag for r in rs.ctcae if r.version == "5.0" for tag in r.sources}
    new = v6_tags - v5_tags
    assert new, "v6.0 rows need a source tag of their own"
    assert "CTCAE v6.0 grade 3" in f["detail"]
    assert any(f"[{tag}]" in f["detail"] for tag in new)


def test_v6_rows_of_ctcae_csv() -> None:
    # §4 v2: every v6.0 row is a v6.0 bound, tagged with its source; no lymphocyte row in v6.0
    rs = load_ruleset()
    v6 = {(r.analyte, r.grade): r.bound for r in rs.ctcae if r.version == "6.0"}
    assert not any(a == "lymphocytes" for a, _ in v6)
    assert v6[("neutrophils", 1)] == pytest.approx(1.5)
    assert v6[("neutrophils", 4)] == pytest.approx(0.1)
    assert v6[("platelets", 4)] == pytest.approx(10.0)
    assert all("carried over" not in r.note for r in rs.ctcae if r.version == "6.0")
