"""§3 and §9 *v2*: a new critical value asks for `immediate`, with the reason `new_critical_value`
and the action "notify the treating clinician now" (clinical-rules.md lines 99-105 and 243).

Critical limits (§3): platelets < 20 and >= 1000; neutrophils < 0.5; haemoglobin < 7.0 g/dL;
WBC < 2.0 and > 30. Without a stored history (these tests store nothing) every critical value is
new (§3 line 105). Below, on and above each limit; the non-critical side keeps the urgency the
other rules of §9 give it (thrombocytopenia < 100, neutropenia < 1.0, moderate or severe anaemia:
`soon`; thrombocytosis, leukopenia, a raised WBC: `routine`).
"""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, interpret

P = pytest.param
NOTIFY = "notify the treating clinician now"  # §3 line 101


@pytest.mark.parametrize(
    ("doc", "name", "flag", "urgency"),
    [
        P(cbc(female(), full=True, platelets=19.9), "platelets", "LL", "immediate", id="§3 platelets 19.9 < 20"),
        P(cbc(female(), full=True, platelets=20.0), "platelets", "L", "soon", id="§3 platelets 20 on the limit"),
        P(cbc(female(), full=True, platelets=20.1), "platelets", "L", "soon", id="§3 platelets 20.1: not critical"),
        P(
            cbc(female(), full=True, platelets=999.9),
            "platelets",
            "H",
            "routine",
            id="§3 platelets 999.9: not critical",
        ),
        P(cbc(female(), full=True, platelets=1000.0), "platelets", "HH", "immediate", id="§3 platelets 1000 (>= 1000)"),
        P(cbc(female(), full=True, platelets=1000.1), "platelets", "HH", "immediate", id="§3 platelets 1000.1"),
        P(cbc(female(), full=True, neutrophils=0.49), "neutrophils", "LL", "immediate", id="§3 neutrophils 0.49 < 0.5"),
        P(cbc(female(), full=True, neutrophils=0.5), "neutrophils", "L", "soon", id="§3 neutrophils 0.5 on the limit"),
        P(cbc(female(), full=True, neutrophils=0.51), "neutrophils", "L", "soon", id="§3 neutrophils 0.51"),
        P(cbc(female(), full=True, hemoglobin=6.99), "hemoglobin", "LL", "immediate", id="§3 Hb 6.99 < 7.0"),
        P(cbc(female(), full=True, hemoglobin=7.0), "hemoglobin", "L", "soon", id="§3 Hb 7.0 on the limit"),
        P(cbc(female(), full=True, hemoglobin=7.01), "hemoglobin", "L", "soon", id="§3 Hb 7.01"),
        P(cbc(female(), wbc=1.99), "wbc", "LL", "immediate", id="§3 WBC 1.99 < 2.0"),
        P(cbc(female(), wbc=2.0), "wbc", "L", "routine", id="§3 WBC 2.0 on the limit: leukopenia only"),
        P(cbc(female(), wbc=2.01), "wbc", "L", "routine", id="§3 WBC 2.01"),
        P(cbc(female(), full=True, wbc=30.0), "wbc", "H", "routine", id="§3 WBC 30 on the limit (> 30)"),
        P(cbc(female(), full=True, wbc=30.1), "wbc", "HH", "immediate", id="§3 WBC 30.1 > 30"),
    ],
)
def test_new_critical_value_is_immediate(doc: dict, name: str, flag: str, urgency: str) -> None:
    ans = interpret(doc)
    assert analyte(ans, name)["flag"] == flag
    assert ans["urgency"] == urgency
    critical = finding(ans, "critical_value")
    if flag in ("LL", "HH"):
        assert critical is not None
        assert ans["urgency_reasons"]["new_critical_value"] == NOTIFY
    else:
        assert critical is None
        assert "new_critical_value" not in ans["urgency_reasons"]


def test_critical_title_never_sits_beside_urgent() -> None:
    # issue 13: "Critical value: notify the clinician now" next to "urgent: ... within 24-48 hours"
    ans = interpret(cbc(female(), full=True, platelets=8.0))
    assert finding(ans, "critical_value")["title"] == "Critical value: notify the clinician now"
    assert ans["urgency"] == "immediate"
    assert NOTIFY in ans["summary"]
    assert "24-48" not in ans["summary"]
    assert "urgent" not in ans["summary"].lower()


def test_each_reason_names_its_action() -> None:
    # §9: "urgency_reasons naming each trigger and the action it asks for"
    ans = interpret(cbc(female(), hemoglobin=11.5, wbc=3.5, neutrophils=2.0, platelets=120.0))
    assert ans["urgency"] == "urgent"
    assert "haematology within 24-48 hours" in ans["urgency_reasons"]["pancytopenia"]
    soon = interpret(cbc(female(), full=True, platelets=99.9))
    assert soon["urgency_reasons"]["thrombocytopenia_below_100"]
    assert not interpret(cbc(female(), full=True))["urgency_reasons"]


def test_a_red_flag_beside_a_new_critical_value_lists_both_immediate_reasons() -> None:
    # §9 line 243: a red flag of §7 and a new critical value both ask for `immediate`
    ans = interpret(cbc(female(), full=True, neutrophils=0.3, fever=True))
    assert ans["urgency"] == "immediate"
    # §9: each trigger is named, the `soon` of neutropenia < 1.0 too
    assert list(ans["urgency_reasons"]) == ["febrile_neutropenia", "new_critical_value", "neutropenia_below_1_0"]
    assert ans["urgency_reasons"]["new_critical_value"] == NOTIFY
    assert "emergency assessment now" in ans["summary"] and NOTIFY in ans["summary"]
    assert "clinical review within days" not in ans["summary"]  # the summary names what sets the urgency


# --- §3 v2: critical flags sent by the laboratory -----------------------------------------------------------------
# The FHIR and HL7 v2 readers hand them on as the document's `laboratory_flags` (the JSON contract has no such
# field: tests/adapters/test_v2_ranges_paths_agree.py); here the engine's side of the rule, on loaded documents.


def lab_flagged(flags: dict[str, str], **results) -> dict:
    doc = cbc(female(), full=True, **results)
    doc["laboratory_flags"] = flags
    return interpret(doc)


@pytest.mark.parametrize(
    ("results", "flags", "name", "flag"),
    [
        P(
            {"neutrophils": 0.9},
            {"neutrophils": "LL"},
            "neutrophils",
            "LL",
            id="§3 v2 the FHIR spec example: neutrophils 0.9 flagged LL (own limit < 0.5 would not call it)",
        ),
        P({"platelets": 250.0}, {"platelets": "HH"}, "platelets", "HH", id="§3 v2 HH on platelets 250 honoured"),
        P(
            {"hemoglobin": 11.9},
            {"hemoglobin": "AA"},
            "hemoglobin",
            "LL",
            id="§3 v2 AA: Hb 11.9 below its range 12-15 -> LL",
        ),
        P(
            {"hemoglobin": 15.1},
            {"hemoglobin": "AA"},
            "hemoglobin",
            "HH",
            id="§3 v2 AA: Hb 15.1 above its range 12-15 -> HH",
        ),
        P({"wbc": 6.9}, {"wbc": "AA"}, "wbc", "LL", id="§3 v2 AA: WBC 6.9 below the middle (7.0) of 4.0-10.0 -> LL"),
        P({"wbc": 7.0}, {"wbc": "AA"}, "wbc", "HH", id="§3 v2 AA: WBC 7.0 on the middle of 4.0-10.0 -> HH"),
    ],
)
def test_laboratory_critical_flags_are_honoured(results: dict, flags: dict, name: str, flag: str) -> None:
    # §3 v2: "the flag becomes LL/HH (AA: in the direction of the value against its range), the analyte carries
    # flag_origin: laboratory, and critical_value is emitted"; §9 v2 a new critical value is immediate.
    ans = lab_flagged(flags, **results)
    a = analyte(ans, name)
    assert (a["flag"], a["flag_origin"], a["critical"]) == (flag, "laboratory", True)
    critical = finding(ans, "critical_value")
    assert critical is not None and name in critical["evidence"] and "by the laboratory" in critical["detail"]
    assert ans["urgency"] == "immediate" and ans["urgency_reasons"]["new_critical_value"] == NOTIFY


def test_a_critical_value_the_service_and_the_laboratory_both_call_is_listed_once() -> None:
    # §3: platelets 8 (< 20) is critical by the service's own limit; the laboratory's LL adds nothing to the text
    critical = finding(lab_flagged({"platelets": "LL"}, platelets=8.0), "critical_value")
    assert critical["detail"].count("platelets 8") == 1
