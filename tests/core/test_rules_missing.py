"""§5 "a lineage whose analyte is missing is not assessed, never normal"."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, interpret, not_assessed

P = pytest.param


def test_platelets_only_anemia_not_assessed() -> None:
    ans = interpret(cbc(female(), platelets=250.0))
    assert finding(ans, "anemia") is None
    na = not_assessed(ans, "anemia")
    assert na is not None
    assert "hemoglobin" in na["needs"]
    assert na["reason"]


def test_platelets_only_neutropenia_not_assessed() -> None:
    ans = interpret(cbc(female(), platelets=250.0))
    assert finding(ans, "neutropenia") is None
    na = not_assessed(ans, "neutropenia")
    assert na is not None
    assert "neutrophils" in na["needs"]


def test_hemoglobin_only_thrombocytopenia_not_assessed() -> None:
    ans = interpret(cbc(female(), hemoglobin=14.0))
    na = not_assessed(ans, "thrombocytopenia")
    assert na is not None
    assert "platelets" in na["needs"]


@pytest.mark.parametrize(
    "missing",
    [
        P("hemoglobin", id="§5 missing Hb: flag None, not N"),
        P("neutrophils", id="§5 missing neutrophils: flag None, not N"),
        P("wbc", id="§5 missing WBC: flag None, not N"),
    ],
)
def test_missing_analyte_never_flagged_normal(missing: str) -> None:
    ans = interpret(cbc(female(), full=True, **{missing: None}))
    a = ans["analytes"].get(missing)
    assert a is None or a["flag"] is None


def test_full_normal_cbc_has_nothing_not_assessed_for_lineages() -> None:
    ans = interpret(cbc(female(), full=True))
    for code in ("anemia", "neutropenia", "thrombocytopenia", "bicytopenia", "pancytopenia"):
        assert not_assessed(ans, code) is None, code
    assert ans["findings"] == []
    assert analyte(ans, "platelets")["flag"] == "N"


# §2 children use age-banded fallback rows; where no row (or lab range) exists the range-based
# findings (leukopenia, lymphopenia: "below the lower limit of the range in use", §4) cannot be
# decided and must be reported as not assessed, never silently normal (§5).
@pytest.mark.parametrize(
    ("age", "name", "value", "code"),
    [
        P(0.5, "wbc", 2.5, "leukopenia", id="§4/§5 infant 6 mo WBC 2.5: leukopenia decided or not_assessed"),
        P(13, "wbc", 2.5, "leukopenia", id="§4/§5 child 13 y WBC 2.5: leukopenia decided or not_assessed"),
        P(17, "wbc", 2.5, "leukopenia", id="§4/§5 young person 17 y WBC 2.5"),
        P(3, "lymphocytes", 0.3, "lymphopenia", id="§4/§5 child 3 y lymphocytes 0.3"),
        P(13, "lymphocytes", 0.3, "lymphopenia", id="§4/§5 child 13 y lymphocytes 0.3"),
        P(8, "wbc", 2.5, "leukopenia", id="§4/§5 child 8 y WBC 2.5"),
    ],
)
def test_child_range_findings_never_silently_normal(age: float, name: str, value: float, code: str) -> None:
    ans = interpret(cbc(female(age), **{name: value}))
    assert finding(ans, code) is not None or not_assessed(ans, code) is not None
    a = analyte(ans, name)
    assert a["flag"] != "N" or a["reference_range"] is not None  # N needs a range in use


@pytest.mark.parametrize("age", [P(0.5, id="6 months"), P(13, id="13 y"), P(17, id="17 y")])
def test_child_flag_normal_only_with_a_range(age: float) -> None:
    # §2 "The output always says which range was used": a flag without a range is not allowed
    ans = interpret(cbc(female(age), platelets=250.0, wbc=7.0, hemoglobin=13.0))
    for name, a in ans["analytes"].items():
        if a["flag"] is not None:
            assert a["reference_range"] is not None, name
            assert a["reference_range"]["source"], name


def test_child_white_lineage_undecided_means_bicytopenia_not_assessed() -> None:
    # 13 y: WBC 2.5 with no range in use -> white lineage undecided unless neutrophils are low;
    # platelets 100 low, Hb 13.0 not anaemia (12-14 y cut 12.0) -> bicytopenia undecidable
    ans = interpret(cbc(female(13), wbc=2.5, neutrophils=2.0, platelets=100.0, hemoglobin=13.0))
    if finding(ans, "leukopenia") is not None:
        assert finding(ans, "bicytopenia") is not None
    elif analyte(ans, "wbc")["reference_range"] is not None:
        assert finding(ans, "bicytopenia") is None  # a range is in use and 2.5 is not below it
    else:  # no range in use: leukopenia, hence the white lineage, is undecided
        assert not_assessed(ans, "leukopenia") is not None
        assert finding(ans, "bicytopenia") is None
        assert not_assessed(ans, "bicytopenia") is not None


def test_fever_with_neutrophils_missing_febrile_neutropenia_not_assessed() -> None:
    # §7 red flag needs the neutrophil count; with fever and no ANC it is not assessed
    ans = interpret(cbc(female(), platelets=250.0, fever=True, lesions=[]))
    assert finding(ans, "febrile_neutropenia") is None
    na = not_assessed(ans, "febrile_neutropenia")
    assert na is not None
    assert "neutrophils" in na["needs"]
