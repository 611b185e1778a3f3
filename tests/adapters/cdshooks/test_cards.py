"""Cards from interpretation answers: summary, indicator, detail, source, link, suggestions.

Expected urgencies, findings and suggestions come from clinical-rules.md (sections named in each
test) and the MIMIC-III demo rows; the answers are made with `interpret_documents`, as the service does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.cdshooks.cards import SUMMARY_LIMIT, CardContext, cbc_card, escape_markdown, indicator
from labservice.core.ruleset import default_ruleset
from labservice.services.interpret import interpret_documents
from tests.adapters.cdshooks.build import mimic_rows

RS = default_ruleset()
#: MIMIC-III ITEMIDs (D_LABITEMS.csv): platelets, WBC, haemoglobin (all K/uL or g/dL), neutrophils %.
MIMIC_ANALYTES = {"51265": "platelets", "51301": "wbc", "51222": "hemoglobin", "51256": "neutrophils_percent"}


def answers(*docs: dict[str, Any]) -> list[dict[str, Any]]:
    return interpret_documents(load_read_documents(list(docs)), ruleset=RS, indexed=True)


def context(**changes: Any) -> CardContext:
    base = {
        "ruleset": RS,
        "base_url": "https://labservice.example.org",
        "patient_id": "pat-1",
        "dashboard_patient": "MRN 42/7",
        "collected_at": "2171-07-24T01:30:00+00:00",
    }
    return CardContext(**{**base, **changes})


def mimic_doc(rows: dict[str, tuple[str, str]], collected_at: str | None = None) -> dict[str, Any]:
    results = {}
    for item, (value, unit) in rows.items():
        try:
            results[MIMIC_ANALYTES[item]] = {"value": float(value), "unit": unit}
        except ValueError:
            continue  # "<5", "UNABLE TO REPORT": not a number, not sent
    doc: dict[str, Any] = {"results": results}
    if collected_at:
        doc["collected_at"] = collected_at
    return doc


ADULT_MALE = {"id": "p", "sex": "male", "age_years": 40}


@pytest.mark.parametrize(
    ("doc", "urgency", "expected"),
    [
        # §9 routine: a normal CBC (each count inside the §2 adult ranges).
        (
            {"patient": ADULT_MALE, "results": {"platelets": 250, "wbc": 7.0, "neutrophils": 4.0, "hemoglobin": 14.5}},
            "routine",
            "info",
        ),
        # §9 soon: thrombocytopenia < 100.
        (
            {"patient": ADULT_MALE, "results": {"platelets": 80, "wbc": 7.0, "neutrophils": 4.0, "hemoglobin": 14.5}},
            "soon",
            "warning",
        ),
        # §9 urgent: pancytopenia (§5: Hb 12.5 < 13.0 for a man, WBC 3.5 < 4.0, platelets 120 < 150), no critical value.
        (
            {"patient": ADULT_MALE, "results": {"platelets": 120, "wbc": 3.5, "neutrophils": 2.5, "hemoglobin": 12.5}},
            "urgent",
            "warning",
        ),
        # §9 immediate: a new critical value (§3 platelets < 20). v2 changes this v1 expectation (urgent -> warning):
        # clinical-rules.md §9 line 243 (*v2*: a new critical value is `immediate`) and line 253 (*v2*: the
        # indicator is `critical` for `immediate`); issue 13: platelets 8 got `warning`.
        (
            {"patient": ADULT_MALE, "results": {"platelets": 8, "wbc": 7.0, "neutrophils": 4.0, "hemoglobin": 14.5}},
            "immediate",
            "critical",
        ),
        # §9 immediate: a §7 red flag, fever with neutrophils <= 0.5.
        (
            {
                "patient": ADULT_MALE,
                "results": {"platelets": 250, "wbc": 3.0, "neutrophils": 0.4, "hemoglobin": 14.5},
                "skin": {"fever": True, "lesions": []},
            },
            "immediate",
            "critical",
        ),
    ],
)
def test_the_indicator_follows_the_urgency(doc, urgency, expected):
    answer = answers(doc)[0]
    assert answer["urgency"] == urgency
    assert cbc_card(answer, context())["indicator"] == expected


def test_the_indicator_table_covers_every_urgency_of_the_contract():
    assert {u: indicator(u) for u in ("routine", "soon", "urgent", "immediate")} == {
        "routine": "info",
        "soon": "warning",
        "urgent": "warning",
        "immediate": "critical",
    }


def test_every_mimic_cbc_gets_a_one_sentence_summary_under_140_characters():
    rows = mimic_rows(None, tuple(MIMIC_ANALYTES))
    docs = [doc for doc in (mimic_doc(r) for r in rows.values()) if doc["results"]]
    assert len(docs) > 1000  # most of the demo's ~2,000 rows per CBC item belong to an admission
    for answer in answers(*docs):
        summary = cbc_card(answer, context())["summary"]
        assert len(summary) < 140 and summary == summary.strip()
        assert ". " not in summary  # one sentence


def test_a_cbc_with_many_findings_still_fits_and_says_how_many_more():
    child = {"id": "c", "sex": "female", "age_years": 9}
    doc = {
        "patient": child,
        "collected_at": "2026-01-02T03:04:05Z",
        "results": {"platelets": 4, "wbc": 0.8, "neutrophils": 0.05, "lymphocytes": 0.1, "hemoglobin": 5.9},
        "skin": {"fever": True, "lesions": [{"type": "petechiae", "blanching": False}]},
    }
    answer = answers(doc)[0]
    assert len(answer["findings"]) >= 8
    summary = cbc_card(answer, context(collected_at=doc["collected_at"]))["summary"]
    assert len(summary) <= SUMMARY_LIMIT < 140
    assert summary.startswith("CBC 2026-01-02: fever with nonblanching rash")  # red flags first
    assert "more)" in summary and summary.endswith("; urgency immediate")


def test_a_cbc_without_findings_says_what_was_not_assessed():
    answer = answers({"results": {"platelets": 250}})[0]
    card = cbc_card(answer, context(collected_at=None))
    assert card["summary"].startswith("CBC of unknown date: no finding in the counts sent, ")
    assert "not assessed" in card["summary"]
    assert "**Not assessed** (missing data is not normal)" in card["detail"]
    assert "suggestions" not in card and "selectionBehavior" not in card


def test_isolated_thrombocytopenia_suggests_a_citrate_repeat_and_a_film_citing_s21():
    # MIMIC-III HADM 160445 at 2171-07-24 01:30: platelets 42 K/uL, WBC 8.6, haemoglobin 13.8 g/dL.
    # §8: isolated thrombocytopenia with no bleeding signs -> smear review + citrate repeat [S21]. §8 v2: "no
    # bleeding signs" must be known, so the skin examination is sent, with no lesion.
    rows = mimic_rows("160445")["2171-07-24 01:30:00"]
    assert rows["51265"] == ("42", "K/uL")
    doc = mimic_doc(rows, "2171-07-24T01:30:00+00:00")
    doc["skin"] = {"fever": False, "lesions": []}
    answer = answers(doc)[0]
    card = cbc_card(answer, context(encounter_id="enc-1"))
    assert card["selectionBehavior"] == "any"
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == ["Repeat the platelet count in a citrate tube", "Blood film review for platelet clumps"]
    codes = [s["actions"][0]["resource"]["code"]["coding"][0]["code"] for s in card["suggestions"]]
    assert codes == ["777-3", "11125-2"]
    for item in card["suggestions"]:
        assert item["isRecommended"] is True
        action = item["actions"][0]
        assert action["type"] == "create"
        assert "[S21] Lardinois B et al., Pseudothrombocytopenia" in action["description"]
        resource = action["resource"]
        ServiceRequest.model_validate(resource)  # a valid FHIR R4 ServiceRequest
        assert resource["subject"] == {"reference": "Patient/pat-1"}
        assert resource["encounter"] == {"reference": "Encounter/enc-1"}
        assert resource["code"]["coding"][0]["system"] == "http://loinc.org"
    assert card["suggestions"][0]["actions"][0]["resource"]["orderDetail"][0]["text"].startswith(
        "Collect the sample in a sodium citrate tube"
    )
    ids = [card["uuid"], *(s["uuid"] for s in card["suggestions"])]
    assert len(set(ids)) == len(ids)
    assert "Reticulocyte count" not in labels


def test_an_undecided_aplastic_assessment_suggests_a_reticulocyte_count_citing_s12():
    # MIMIC-III HADM 105150 at 2138-11-09 16:00: platelets 19, WBC 1.9, neutrophils 40 %, Hb 8.5.
    # §6: (b) platelets < 20 met; (a) ANC 1.9 x 40 / 100 = 0.76, not < 0.5; no reticulocyte count:
    # exactly one of (a)(b) and no reticulocytes -> indeterminate; the reticulocyte count decides.
    rows = mimic_rows("105150", tuple(MIMIC_ANALYTES))["2138-11-09 16:00:00"]
    assert rows["51265"] == ("19", "K/uL") and rows["51256"] == ("40", "%")
    answer = answers(mimic_doc(rows))[0]
    assert answer["aplastic_anemia"]["assessment"] == "indeterminate"
    card = cbc_card(answer, context())
    assert [s["label"] for s in card["suggestions"]] == ["Reticulocyte count"]
    action = card["suggestions"][0]["actions"][0]
    assert action["resource"]["code"]["coding"][0]["code"] == "60474-4"  # clinical-rules §1, absolute
    assert "[S12] Killick SB et al." in action["description"]
    ServiceRequest.model_validate(action["resource"])
    assert "**Aplastic anaemia blood-count criteria**" in card["detail"]


def test_the_detail_lists_findings_sources_and_counts():
    rows = mimic_rows("160445")["2171-07-24 01:30:00"]
    answer = answers(mimic_doc(rows, "2171-07-24T01:30:00+00:00"))[0]
    card = cbc_card(answer, context(older_cbcs=2, read_from={"platelets": "Observation/plt-1"}))
    detail = card["detail"]
    assert "**Most recent CBC**, collected 2171-07-24T01:30:00+00:00." in detail
    assert "2 older CBCs in the results sent are not reviewed on this card" in detail
    assert "**Urgency: soon**" in detail
    for finding in answer["findings"]:
        assert escape_markdown(finding["title"]) in detail
        for citation in finding["sources"]:
            assert escape_markdown(citation) in detail
    assert "| Platelets | 42 10\\*9/L | L |" in detail and "Observation/plt-1" in detail
    assert "it never diagnoses" in detail


def test_source_and_dashboard_link_are_absolute():
    card = cbc_card(answers({"results": {"platelets": 250}})[0], context())
    assert card["source"]["url"] == "https://labservice.example.org/api/v1/ruleset"
    assert RS.version in card["source"]["label"]
    assert card["links"] == [
        {
            "label": card["links"][0]["label"],
            "url": "https://labservice.example.org/dashboard/patients/MRN%2042%2F7",
            "type": "absolute",
        }
    ]


def test_text_from_the_clients_data_cannot_add_links_or_markup():
    card = cbc_card(
        answers({"results": {"platelets": 250}})[0],
        context(
            unused=[("prefetch.x", "unit '[click](https://evil.example)' *unknown*")],
            read_from={"platelets": "Observation/<img src=x>"},
        ),
    )
    assert "[click](" not in card["detail"] and "\\[click\\]" in card["detail"]
    assert re.search(r"(?<!\\)<img", card["detail"]) is None and "\\<img" in card["detail"]
    assert "\\*unknown\\*" in card["detail"]


def test_card_values_are_written_as_clinicians_write_them_not_as_computed():
    """Issue 14 item 2, clinical-rules §1 v2: a number in text has 3 significant figures and never binary noise.
    Haemoglobin 6.2 mmol/L is 6.2 / 0.6206 = 9.99033… g/dL (§1: 1 g/dL = 0.6206 mmol/L) -> 9.99; platelets 35,427/uL
    are 35.427 x10^9/L -> 35.4; WBC 7,130/uL is 7.13 x10^9/L."""
    answer = answers(
        {
            "patient": ADULT_MALE,
            "results": {
                "hemoglobin": {"value": 6.2, "unit": "mmol/L"},
                "platelets": {"value": 35427, "unit": "/uL"},
                "wbc": {"value": 7130, "unit": "/uL"},
            },
        }
    )[0]
    detail = cbc_card(answer, context())["detail"]
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1]
        for line in detail.splitlines()
        if line.startswith("| ") and not line.startswith("| analyte")
    }
    assert rows["Haemoglobin"] == "9.99 g/dL"
    assert rows["Platelets"] == "35.4 10\\*9/L"
    assert rows["White cell count"] == "7.13 10\\*9/L"


def test_every_card_offers_coded_override_reasons():
    """Issue 14 item 2, CDS Hooks 2.0 Card.overrideReasons: the patient-view card offers the same coded reasons as the
    order-sign card (already addressed, benefit outweighs the risk, does not apply), each a Coding the EHR can send
    back in its feedback."""
    card = cbc_card(answers({"patient": ADULT_MALE, "results": {"platelets": 8}})[0], context())
    reasons = card["overrideReasons"]
    assert [reason["code"] for reason in reasons] == ["already-addressed", "benefit-outweighs-risk", "not-applicable"]
    assert all(reason["system"] and reason["display"] for reason in reasons)
