"""§11 *v2* treatment context: `context.myelosuppressive_therapy`, and §6 *v2* aplastic anaemia
`not_applicable` (clinical-rules.md §6, §11; api-contract.md `context`).

Expected values from the rules: with myelosuppressive treatment stated, cytopenias are still
reported and graded; the aplastic-anaemia assessment is `not_applicable` ("counts during
myelosuppressive treatment cannot be read as marrow aplasia"); a critical neutrophil, platelet or
low WBC count is a possible expected nadir, still `critical_value`, asking for `urgent` rather than
`immediate`, new or not; other critical values unchanged; febrile neutropenia stays `immediate`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, interpret, res

P = pytest.param
NADIR = "critical_value_possible_nadir"


def treated(doc: dict[str, Any], therapy: bool | None = True) -> dict[str, Any]:
    doc["context"] = {"myelosuppressive_therapy": therapy}
    return doc


def aplastic_words(ans: dict[str, Any]) -> str:
    """Every text the answer writes, except the block's own key (which names the assessment)."""
    aa = ans["aplastic_anemia"]
    texts = [aa["text"], aa.get("caveat") or "", ans["summary"]]
    texts += [f["title"] + " " + f["detail"] for f in ans["findings"]]
    return " ".join(texts).lower()


# --- §11 critical values during myelosuppressive treatment ------------------------------------


@pytest.mark.parametrize(
    ("results", "name", "therapy", "urgency"),
    [
        P(
            dict(neutrophils=0.49),
            "neutrophils",
            True,
            "urgent",
            id="§11 v2 neutrophils 0.49 (< 0.5 critical) on treatment: nadir, urgent",
        ),
        P(
            dict(neutrophils=0.49),
            "neutrophils",
            False,
            "immediate",
            id="§3 v2 neutrophils 0.49 treatment false: new critical, immediate",
        ),
        P(
            dict(neutrophils=0.49),
            "neutrophils",
            None,
            "immediate",
            id="§3 v2 neutrophils 0.49 treatment not stated: immediate",
        ),
        P(
            dict(neutrophils=0.5),
            "neutrophils",
            True,
            "soon",
            id="§11 v2 neutrophils 0.5 on the limit: not critical, neutropenia < 1.0 soon",
        ),
        P(
            dict(platelets=19.9),
            "platelets",
            True,
            "urgent",
            id="§11 v2 platelets 19.9 (< 20 critical) on treatment: urgent",
        ),
        P(
            dict(platelets=20.0),
            "platelets",
            True,
            "soon",
            id="§11 v2 platelets 20 on the limit: thrombocytopenia < 100 soon",
        ),
        P(
            dict(platelets=19.9),
            "platelets",
            False,
            "immediate",
            id="§3 v2 platelets 19.9 without treatment: immediate",
        ),
    ],
)
def test_critical_low_count_on_treatment_is_a_possible_nadir(
    results: dict, name: str, therapy: bool | None, urgency: str
) -> None:
    ans = interpret(treated(cbc(female(), full=True, **results), therapy))
    assert ans["urgency"] == urgency
    critical = finding(ans, "critical_value")
    if analyte(ans, name)["flag"] == "LL":
        assert critical is not None  # §11 "still critical_value"
        if therapy:
            assert NADIR in ans["urgency_reasons"] and "new_critical_value" not in ans["urgency_reasons"]
            assert "possible expected nadir" in critical["detail"]
            assert "notify the clinician now" not in critical["title"]  # it asks for urgent (§11)
        else:
            assert "new_critical_value" in ans["urgency_reasons"] and NADIR not in ans["urgency_reasons"]
    else:
        assert critical is None


@pytest.mark.parametrize(
    ("wbc", "urgency", "critical"),
    [
        P(1.99, "urgent", True, id="§11 v2 WBC 1.99 (< 2.0 critical) on treatment: nadir, urgent"),
        P(2.0, "routine", False, id="§11 v2 WBC 2.0 on the limit: leukopenia only, routine"),
    ],
)
def test_critical_low_wbc_on_treatment(wbc: float, urgency: str, critical: bool) -> None:
    ans = interpret(treated(cbc(female(), wbc=wbc)))
    assert ans["urgency"] == urgency
    assert (finding(ans, "critical_value") is not None) is critical
    assert finding(ans, "leukopenia") is not None  # §11 cytopenias still reported and graded
    assert analyte(ans, "wbc")["ctcae_grade"] == (3 if wbc < 2.0 else 2)  # §4 CTCAE WBC 3 = < 2.0-1.0


@pytest.mark.parametrize(
    ("results", "reason"),
    [
        P(dict(hemoglobin=6.99), "new_critical_value", id="§11 v2 Hb 6.99 critical on treatment stays immediate"),
        P(dict(platelets=1000.0), "new_critical_value", id="§11 v2 platelets 1000 (high) stays immediate"),
        P(dict(wbc=30.1), "new_critical_value", id="§11 v2 WBC 30.1 (high) stays immediate"),
    ],
)
def test_other_critical_values_are_unchanged_by_treatment(results: dict, reason: str) -> None:
    ans = interpret(treated(cbc(female(), full=True, **results)))
    assert ans["urgency"] == "immediate"
    assert reason in ans["urgency_reasons"]
    assert NADIR not in ans["urgency_reasons"]


def test_a_nadir_beside_another_critical_value_keeps_immediate() -> None:
    # §11: "other critical values are unchanged": Hb 6.5 stays a new critical value beside the nadir
    ans = interpret(treated(cbc(female(), full=True, neutrophils=0.3, hemoglobin=6.5)))
    assert ans["urgency"] == "immediate"
    assert {"new_critical_value", NADIR} <= set(ans["urgency_reasons"])


def test_febrile_neutropenia_stays_immediate_on_treatment() -> None:
    # §11 "Febrile neutropenia stays immediate: it is the emergency of this setting [S8]"
    ans = interpret(treated(cbc(female(), full=True, neutrophils=0.3, fever=True)))
    assert ans["urgency"] == "immediate"
    assert finding(ans, "febrile_neutropenia") is not None
    assert "febrile_neutropenia" in ans["urgency_reasons"]
    assert finding(ans, "critical_value") is not None


def test_the_nadir_reason_names_its_action() -> None:
    # §9 v2: urgency_reasons maps each trigger to the action it asks for
    ans = interpret(treated(cbc(female(), full=True, platelets=8.0)))
    action = ans["urgency_reasons"][NADIR]
    assert "24-48 hours" in action and "nadir" in action
    assert "notify the treating clinician now" not in ans["summary"]


def test_cytopenias_still_reported_and_graded_on_treatment() -> None:
    # §11 "cytopenias are still reported and graded (CTCAE exists for exactly this)"
    ans = interpret(treated(cbc(female(), wbc=1.5, neutrophils=0.3, platelets=15.0, hemoglobin=8.0)))
    for code in ("thrombocytopenia", "neutropenia", "leukopenia", "anemia", "pancytopenia"):
        assert finding(ans, code) is not None, code
    assert finding(ans, "thrombocytopenia")["grade"] == 4  # §4 CTCAE v5 platelets 4 = < 25
    assert finding(ans, "neutropenia")["grade"] == 4  # §4 CTCAE v5 neutrophils 4 = < 0.5


# --- §6 v2 not_applicable -------------------------------------------------------------------


def test_issue_wbc_0_3_after_chemotherapy_is_not_very_severe_aplastic() -> None:
    # issue 13: "WBC 0.3 ... after chemotherapy: 'Meets blood-count criteria for very severe aplastic anaemia'"
    ans = interpret(treated(cbc(female(), wbc=0.3, neutrophils=0.1, platelets=15.0, hemoglobin=8.0)))
    aa = ans["aplastic_anemia"]
    assert aa["assessment"] == "not_applicable"
    assert aa["not_applicable_reasons"] == ["myelosuppressive_therapy"]
    assert "counts during myelosuppressive treatment cannot be read as marrow aplasia" in aa["text"]
    assert aa["criteria_met"] == [] and aa["criteria"] == {}  # §6 v2 "no aplastic-anaemia criteria"
    assert aa["caveat"] is None  # §6 v2 "and no aplastic-anaemia caveat"
    assert "aplastic" not in aplastic_words(ans)
    assert "severe_aplastic_criteria" not in ans["urgency_reasons"]
    marrow = finding(ans, "marrow_failure_range")  # §6 v2 still emitted when its counts are met
    assert marrow is not None
    assert "prompts a marrow examination" in (marrow["title"] + marrow["detail"]).lower()
    assert ans["urgency"] == "urgent"  # pancytopenia and the nadir both ask for urgent (§9, §11)


@pytest.mark.parametrize(
    ("wbc", "high", "assessment"),
    [
        P(11.1, 11.0, "not_applicable", id="§6 v2 WBC 11.1 above the lab's upper limit 11.0: not_applicable"),
        P(11.0, 11.0, "severe", id="§6 v2 WBC 11.0 on the upper limit: assessed (severe)"),
        P(10.9, 11.0, "severe", id="§6 v2 WBC 10.9 below the upper limit: assessed"),
    ],
)
def test_wbc_above_the_upper_limit_is_not_applicable(wbc: float, high: float, assessment: str) -> None:
    ans = interpret(cbc(female(), wbc=res(wbc, low=4.0, high=high), neutrophils=0.3, platelets=15.0, hemoglobin=8.0))
    aa = ans["aplastic_anemia"]
    assert aa["assessment"] == assessment
    if assessment == "not_applicable":
        assert aa["not_applicable_reasons"] == ["wbc_above_range"]
        assert "upper limit" in aa["text"]
        assert aa["caveat"] is None and aa["criteria"] == {}
        assert "aplastic" not in aplastic_words(ans)
    else:
        assert aa["caveat"] and aa["not_applicable_reasons"] == []


def test_issue_mimic_leukaemia_pattern_is_not_read_as_aplastic() -> None:
    # issue 13: MIMIC WBC 35.9, platelets 14, Hb 8.9 read as "cannot be decided: reticulocytes would decide it"
    ans = interpret(cbc(female(), wbc=35.9, platelets=14.0, hemoglobin=8.9))
    aa = ans["aplastic_anemia"]
    assert aa["assessment"] == "not_applicable"  # §6 v2 WBC above the upper limit of its range (adult 10.0)
    assert "wbc_above_range" in aa["not_applicable_reasons"]
    assert "aplastic" not in aplastic_words(ans)
    assert finding(ans, "marrow_failure_range")["title"] == "Counts in the range that prompts a marrow examination"


def test_treatment_false_leaves_the_assessment() -> None:
    # §11 applies when true only
    ans = interpret(treated(cbc(female(), wbc=1.5, neutrophils=0.1, platelets=15.0, hemoglobin=8.0), False))
    assert ans["aplastic_anemia"]["assessment"] == "very_severe"  # §6 (a)+(b) and ANC < 0.2
    assert "marrow failure" in finding(ans, "marrow_failure_range")["detail"]


def test_not_applicable_reasons_is_a_hook_computed_from_columns() -> None:
    # §6 v2 / §10: blasts will add one entry; each entry is computed from the engine's columns
    from labservice.core.aplastic import NOT_APPLICABLE_REASONS

    assert [r.code for r in NOT_APPLICABLE_REASONS][:2] == ["wbc_above_range", "myelosuppressive_therapy"]
    assert all("aplastic" not in r.text.lower() for r in NOT_APPLICABLE_REASONS)


def test_a_laboratory_low_critical_flag_on_treatment_is_a_possible_nadir() -> None:
    # §3 v2 a laboratory LL flag is a critical value (FHIR spec example: neutrophils 0.9 LL);
    # §11 v2 a critical neutrophil count during myelosuppressive treatment asks for urgent, not immediate
    import pandas as pd

    from labservice.core.interpret import interpret_cbc_table
    from labservice.core.render import render_interpretations
    from labservice.core.table import LAB_FLAG_CODES

    frame = pd.DataFrame(
        {
            "sex": ["female"] * 2,
            "age_years": [40.0] * 2,
            "neutrophils": [0.9, 0.9],
            "neutrophils_lab_flag": [LAB_FLAG_CODES["LL"]] * 2,
            "myelosuppressive_therapy": [1.0, 0.0],
        }
    )
    treated, untreated = render_interpretations(interpret_cbc_table(frame))
    assert finding(treated, "critical_value") is not None and finding(untreated, "critical_value") is not None
    assert treated["urgency"] == "urgent" and NADIR in treated["urgency_reasons"]
    assert untreated["urgency"] == "immediate" and "new_critical_value" in untreated["urgency_reasons"]
