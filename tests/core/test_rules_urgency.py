"""§9 one overall urgency per CBC, the highest that any finding asks for, with its triggers."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import (
    PETECHIAE,
    URGENCIES,
    cbc,
    female,
    interpret,
    lesion,
    male,
)

P = pytest.param


@pytest.mark.parametrize(
    ("doc", "urgency", "reason"),
    [
        # routine
        P(cbc(female(), full=True), "routine", None, id="§9 routine: normal CBC"),
        P(cbc(female(), full=True, platelets=100.0), "routine", None, id="§9 routine: thrombocytopenia 100 not < 100"),
        P(cbc(female(), full=True, neutrophils=1.0), "routine", None, id="§9 routine: neutropenia 1.0 not < 1.0"),
        P(cbc(female(), full=True, hemoglobin=11.0), "routine", None, id="§9 routine: mild anaemia (11.0)"),
        P(cbc(male(), full=True, hemoglobin=12.9), "routine", None, id="§9 routine: mild anaemia man"),
        P(cbc(female(), full=True, platelets=460.0), "routine", None, id="§9 routine: thrombocytosis"),
        P(cbc(female(), full=True, lymphocytes=0.5), "routine", None, id="§9 routine: lymphopenia"),
        P(
            cbc(female(), full=True, lesions=[PETECHIAE]),
            "routine",
            None,
            id="§9 routine: adult non-blanching lesion with platelets 250, no fever",
        ),
        # soon
        P(
            cbc(female(), full=True, platelets=99.9),
            "soon",
            "thrombocytopenia_below_100",
            id="§9 soon: thrombocytopenia 99.9 < 100",
        ),
        P(
            cbc(female(), full=True, platelets=20.0),
            "soon",
            "thrombocytopenia_below_100",
            id="§9 soon: platelets 20 (not critical, not < 20)",
        ),
        P(
            cbc(female(), full=True, neutrophils=0.99),
            "soon",
            "neutropenia_below_1_0",
            id="§9 soon: neutropenia 0.99 < 1.0",
        ),
        P(
            cbc(female(), full=True, neutrophils=0.5),
            "soon",
            "neutropenia_below_1_0",
            id="§9 soon: neutrophils 0.5 (critical is < 0.5)",
        ),
        P(
            cbc(female(), full=True, hemoglobin=10.99),
            "soon",
            "moderate_or_severe_anemia",
            id="§9 soon: moderate anaemia 10.99",
        ),
        P(
            cbc(female(), full=True, hemoglobin=8.0),
            "soon",
            "moderate_or_severe_anemia",
            id="§9 soon: moderate anaemia 8.0",
        ),
        P(
            cbc(female(), full=True, hemoglobin=7.0),
            "soon",
            "moderate_or_severe_anemia",
            id="§9 soon: severe anaemia 7.0 (critical is < 7.0)",
        ),
        P(
            cbc(female(), full=True, hemoglobin=11.5, platelets=120.0),
            "soon",
            "bicytopenia",
            id="§9 soon: bicytopenia (mild anaemia + plt 120)",
        ),
        P(
            cbc(female(), full=True, platelets=50.0, lesions=[PETECHIAE]),
            "soon",
            "thrombocytopenia_below_100",
            id="§9 lesions with platelets 50 (not < 50) -> soon only",
        ),
        P(
            cbc(female(), full=True, platelets=40.0, lesions=[lesion(None, 1.0, blanching=True)]),
            "soon",
            "thrombocytopenia_below_100",
            id="§9 blanching lesion with platelets 40 -> not the lesion trigger",
        ),
        # immediate: v2 changes these v1 expectations (a critical value was `urgent`): clinical-rules.md
        # §3 lines 99-102 (*v2*: "a **new** critical value asks for `immediate` urgency (§9), with the
        # reason `new_critical_value`") and §9 line 243 (*v2* immediate: "a new critical value"). Without
        # a stored history every critical value is new (§3 line 105).
        P(
            cbc(female(), full=True, platelets=19.9),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical platelets 19.9 < 20",
        ),
        P(
            cbc(female(), full=True, platelets=1000.0),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical platelets >= 1000",
        ),
        P(
            cbc(female(), full=True, neutrophils=0.49),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical neutrophils 0.49 < 0.5",
        ),
        P(
            cbc(female(), full=True, hemoglobin=6.99),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical Hb 6.99 < 7.0",
        ),
        P(
            cbc(female(), wbc=1.99),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical WBC 1.99 < 2.0",
        ),
        P(
            cbc(female(), full=True, wbc=30.1),
            "immediate",
            "new_critical_value",
            id="§3/§9 v2 immediate: new critical WBC 30.1 > 30",
        ),
        # urgent
        P(
            cbc(female(), hemoglobin=11.5, wbc=3.5, neutrophils=2.0, platelets=120.0),
            "urgent",
            "pancytopenia",
            id="§9 urgent: pancytopenia (all mild)",
        ),
        # v2 changes this v1 expectation (`urgent`): neutrophils 0.3 < 0.5 is a new critical value (§3),
        # clinical-rules.md §9 line 243 (*v2*) -> immediate; the severe-AA trigger is still listed.
        P(
            cbc(female(), hemoglobin=9.0, wbc=2.5, neutrophils=0.3, platelets=30.0, reticulocytes=50.0),
            "immediate",
            "severe_aplastic_criteria",
            id="§9 v2 immediate: severe AA blood criteria (a)+(c), neutrophils critical",
        ),
        P(
            cbc(female(), full=True, platelets=49.9, lesions=[PETECHIAE]),
            "urgent",
            "nonblanching_lesions_low_platelets",
            id="§9 urgent: non-blanching lesions with platelets 49.9 < 50",
        ),
        P(
            cbc(female(), full=True, platelets=30.0, lesions=[lesion(None, 5.0)]),
            "urgent",
            "nonblanching_lesions_low_platelets",
            id="§9 urgent: purpura (by size) with platelets 30",
        ),
    ],
)
def test_urgency(doc: dict, urgency: str, reason: str | None) -> None:
    ans = interpret(doc)
    assert ans["urgency"] == urgency
    if reason is None:
        assert not ans["urgency_reasons"]
    else:
        assert reason in ans["urgency_reasons"]


def test_severe_aplastic_criteria_reason_needs_reticulocytes_when_one_of_ab() -> None:
    # §6 (a) met, (b) not, (c) automated 59.9 < 60 -> severe -> §9 urgent
    ans = interpret(cbc(female(), hemoglobin=9.0, wbc=2.5, neutrophils=0.3, platelets=30.0, reticulocytes=59.9))
    assert ans["aplastic_anemia"]["assessment"] == "severe"
    assert "severe_aplastic_criteria" in ans["urgency_reasons"]


def test_not_severe_aplastic_has_no_aplastic_reason() -> None:
    ans = interpret(cbc(female(), hemoglobin=9.0, wbc=2.5, neutrophils=0.3, platelets=30.0, reticulocytes=60.0))
    assert ans["aplastic_anemia"]["assessment"] == "not_severe"
    assert "severe_aplastic_criteria" not in ans["urgency_reasons"]


def test_highest_urgency_wins_and_all_reasons_listed() -> None:
    # §9 "the highest that any finding asks for": pancytopenia + lesions -> urgent, both listed
    ans = interpret(cbc(female(), hemoglobin=9.0, wbc=3.0, neutrophils=1.2, platelets=25.0, lesions=[PETECHIAE]))
    assert ans["urgency"] == "urgent"
    for reason in ("pancytopenia", "nonblanching_lesions_low_platelets"):
        assert reason in ans["urgency_reasons"], reason


def test_a_new_critical_value_outranks_pancytopenia() -> None:
    # v2 changes this v1 expectation (critical + pancytopenia + lesions was `urgent`): clinical-rules.md
    # §9 line 243 (*v2*): a new critical value (platelets 15 < 20, §3) asks for `immediate`, above the
    # `urgent` of pancytopenia and of non-blanching lesions with platelets < 50.
    ans = interpret(cbc(female(), hemoglobin=9.0, wbc=3.0, neutrophils=1.2, platelets=15.0, lesions=[PETECHIAE]))
    assert ans["urgency"] == "immediate"
    # §9: urgency_reasons names each trigger and the action it asks for, in findings.csv order
    assert list(ans["urgency_reasons"]) == [
        "new_critical_value",
        "pancytopenia",
        "nonblanching_lesions_low_platelets",
        "thrombocytopenia_below_100",
        "moderate_or_severe_anemia",
    ]


def test_summary_and_urgency_types() -> None:
    ans = interpret(cbc(female(), full=True, platelets=99.9))
    assert ans["urgency"] in URGENCIES
    assert isinstance(ans["summary"], str) and ans["summary"]
