"""review(): a hook call with prefetch from the fixtures -> {"cards": [...]}, without Flask.

Expected findings and urgencies are those clinical-rules.md gives for the values in the fixture files.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marshmallow import ValidationError

from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.cdshooks.cards import escape_markdown
from labservice.adapters.cdshooks.fhir_client import FhirAccess
from labservice.adapters.cdshooks.request import parse_hook_request
from labservice.adapters.cdshooks.service import CBC_REVIEW
from labservice.adapters.errors import InputError
from labservice.core.ruleset import default_ruleset
from labservice.errors import flatten_errors
from labservice.services.cds_review import review
from labservice.services.interpret import interpret_documents
from tests.adapters.cdshooks.build import (
    hook_call,
    loinc_of,
    mimic_observations,
    searchset,
    spec_example_observations,
    synthea_server_data,
)

RS = default_ruleset()
BASE = "https://labservice.example.org"


def interpret(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        loaded = load_read_documents(docs)
    except ValidationError as error:
        raise InputError(flatten_errors(error.messages)) from None
    return interpret_documents(loaded, ruleset=RS, indexed=True)


def cards_for(body: dict[str, Any]) -> list[dict[str, Any]]:
    return review(
        parse_hook_request(body, CBC_REVIEW),
        ruleset=RS,
        interpret=interpret,
        base_url=BASE,
        access=FhirAccess(timeout=1),
    )["cards"]


def newest(observations: list[dict[str, Any]], code: str) -> dict[str, Any]:
    return max((o for o in observations if loinc_of(o) == code), key=lambda o: o["effectiveDateTime"])


def test_synthea_latest_cbc_with_a_critical_wbc_is_critical():
    patient, observations = synthea_server_data("Cleo_Friesen")
    wbc, hgb = newest(observations, "6690-2"), newest(observations, "718-7")
    # The fixture: the newest panel (1988-09-24) has WBC 1.71 10*3/uL and Hb 9.71 g/dL, a man born 1920.
    assert wbc["effectiveDateTime"].startswith("1988-09-24") and round(wbc["valueQuantity"]["value"], 2) == 1.71
    assert round(hgb["valueQuantity"]["value"], 2) == 9.71 and patient["gender"] == "male"
    [card] = cards_for(hook_call(patient["id"], {"patient": patient, "cbcObservations": searchset(observations)}))
    # §3 WBC < 2.0 is critical, and new (a card stores nothing, §3 line 105) -> §9 immediate -> critical;
    # §4 anaemia: Hb < 13.0 for a man >= 15 y; §4 leukopenia (WBC < 4.0); §5 bicytopenia (red and white lineages).
    # v2 changes this v1 expectation (urgent -> warning): clinical-rules.md §9 lines 243 and 253 (*v2*).
    assert card["indicator"] == "critical"
    for code in ("critical value", "bicytopenia", "anemia", "leukopenia"):
        assert code in card["summary"]
    assert "urgency immediate" in card["summary"]
    assert "new critical value (notify the treating clinician now)" in card["detail"]
    panels = {o["effectiveDateTime"] for o in observations}
    assert f"{len(panels) - 1} older CBCs" in card["detail"]  # Cleo Friesen: 8 panels (fixtures README)
    assert f"Observation/{wbc['id']}" in card["detail"]
    # Synthea's RDW is in fL (fixtures README): RDW-SD. v2 changes this v1 expectation (it was listed as not
    # used): clinical-rules §1 v2 "Accept RDW-SD as its own analyte `rdw_sd` (fL)", so the latest panel's is
    # read (a row of the counts table, read from its Observation) and nothing is left unused.
    rdw = newest(observations, "21000-5")
    assert "**Not used**" not in card["detail"]
    assert "| Red cell distribution width (SD) |" in card["detail"]
    assert f"Observation/{rdw['id']}" in card["detail"]
    mrn = next(
        i["value"] for i in patient["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"
    )  # medical record number
    assert card["links"][0]["url"] == f"{BASE}/dashboard/patients/{mrn}"


def test_synthea_normal_latest_cbc_is_an_info_card_without_suggestions():
    patient, observations = synthea_server_data("Clemente_Kreiger")
    plt = newest(observations, "777-3")
    assert 150 <= plt["valueQuantity"]["value"] < 450  # 305.99: no §4 platelet finding
    [card] = cards_for(hook_call(patient["id"], {"patient": patient, "cbcObservations": searchset(observations)}))
    assert card["indicator"] == "info"
    assert "suggestions" not in card
    assert "1 older CBC in the results sent is not reviewed" in card["detail"]
    assert f"Observation/{plt['id']}" in card["detail"]


def test_fhir_spec_example_neutrophils_0_9_is_neutropenia_without_a_patient():
    observations = spec_example_observations()
    anc = next(o for o in observations if loinc_of(o) == "751-8")
    assert anc["valueQuantity"]["value"] == 0.9
    [card] = cards_for(hook_call("pat2", {"patient": None, "cbcObservations": searchset(observations)}))
    # §4 neutropenia < 1.5, moderate band 0.5-0.99; clinical-rules §3 v2: the laboratory's LL is honoured, a
    # critical value, and §9 v2: a new critical value is "immediate", whose CDS Hooks indicator is `critical`.
    assert "neutropenia" in card["summary"] and "critical value" in card["summary"]
    assert "urgency immediate" in card["summary"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("CBC of unknown date")  # the Observations carry no effective time
    assert "Observation/r9" in card["detail"]
    assert card["links"][0]["url"] == f"{BASE}/dashboard/patients/Patient%2Fpat2"


def test_mimic_low_platelets_most_recent_of_three_without_skin_data_suggests_no_citrate_repeat():
    times = ["2171-07-23 10:32:00", "2171-07-24 01:30:00", "2171-07-23 19:14:00"]
    observations = mimic_observations("160445", times, "mimic-160445")
    [card] = cards_for(hook_call("mimic-160445", {"patient": None, "cbcObservations": searchset(observations)}))
    # Newest is 2171-07-24 01:30: platelets 42 K/uL (< 50: CTCAE grade 3; < 100: soon), WBC 8.6, Hb 13.8.
    # clinical-rules §8 v2: "no bleeding signs" must be known and a CDS Hooks call sends no skin examination,
    # so the isolated count no longer suggests EDTA pseudothrombocytopenia (v1 did, with two suggestions;
    # tests/adapters/cdshooks/test_cards.py sends the skin examination and gets them).
    assert card["summary"].startswith("CBC 2171-07-24: thrombocytopenia; urgency soon")
    assert card["indicator"] == "warning"
    assert "2 older CBCs" in card["detail"]
    assert "suggestions" not in card


@pytest.mark.parametrize("observations", [None, {"resourceType": "Bundle", "type": "searchset", "total": 0}])
def test_no_cbc_gives_no_cards(observations):
    assert cards_for(hook_call("p1", {"patient": None, "cbcObservations": observations})) == []


def test_only_withdrawn_results_give_no_cards():
    observations = mimic_observations("160445", ["2171-07-24 01:30:00"], "p1")
    for resource in observations:
        resource["status"] = "entered-in-error"
    assert cards_for(hook_call("p1", {"patient": None, "cbcObservations": searchset(observations)})) == []


def test_an_implausible_value_in_the_latest_cbc_gives_a_warning_card_naming_its_place_in_the_call():
    observations = mimic_observations("160445", ["2171-07-24 01:30:00"], "p1")
    platelets = next(o for o in observations if loinc_of(o) == "777-3")
    platelets["valueQuantity"]["value"] = 210000.0  # K/uL: a count per uL sent as thousands
    body = hook_call("p1", {"patient": None, "cbcObservations": searchset(observations)})
    [card] = cards_for(body)
    assert card["indicator"] == "warning"
    index = [e["resource"]["id"] for e in body["prefetch"]["cbcObservations"]["entry"]].index(platelets["id"])
    where = escape_markdown(f"prefetch.cbcObservations.entry[{index}].resource(Observation/{platelets['id']})")
    [problem] = [line for line in card["detail"].splitlines() if line.startswith("- ")]
    assert problem.startswith(f"- {where}")


def test_a_problem_in_an_older_cbc_does_not_block_the_latest():
    observations = mimic_observations("160445", ["2171-07-23 10:32:00", "2171-07-24 01:30:00"], "p1")
    old = next(o for o in observations if loinc_of(o) == "777-3" and o["effectiveDateTime"].startswith("2171-07-23"))
    old["valueQuantity"]["value"] = 210000.0
    [card] = cards_for(hook_call("p1", {"patient": None, "cbcObservations": searchset(observations)}))
    assert card["summary"].startswith("CBC 2171-07-24")


def test_a_dated_cbc_wins_over_an_undated_one_listed_first():
    observations = mimic_observations("160445", ["2171-07-24 01:30:00"], "p1")
    undated = copy.deepcopy(mimic_observations("160445", ["2171-07-23 10:32:00"], "p1"))
    for resource in undated:
        resource.pop("effectiveDateTime")
        resource["id"] += "-undated"
    bundle = searchset(observations)
    bundle["entry"] = searchset(undated)["entry"] + bundle["entry"]
    [card] = cards_for(hook_call("p1", {"patient": None, "cbcObservations": bundle}))
    assert card["summary"].startswith("CBC 2171-07-24") and "1 older CBC" in card["detail"]


def test_cds_hooks_reads_the_same_cbc_as_every_path_clinical_rules_1_v2():
    """clinical-rules §1 v2 through CDS Hooks (prefetch -> the FHIR reader): "9.309 mmol/L haemoglobin is 15.0
    g/dL, on the bound and inside the range" (§2 female 12.0-15.0 -> N), and lymphocytes derived from lymphocyte
    % (26478-8): WBC 0.99 x 30 % = 0.297, from a WBC below 1.0 so resting on very few cells."""
    patient = {"resourceType": "Patient", "id": "v2num", "gender": "female", "birthDate": "1992-01-01"}
    when = "2026-11-20T08:30:00Z"

    def obs(ident: str, code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": ident,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/v2num"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        }

    observations = [
        obs("hb", "718-7", 9.309, "mmol/L"),
        obs("wbc", "6690-2", 0.99, "10*9/L"),
        obs("ly", "26478-8", 30, "%"),
    ]
    [card] = cards_for(hook_call("v2num", {"patient": patient, "cbcObservations": searchset(observations)}))
    assert "| Haemoglobin | 15 g/dL | N |" in card["detail"]
    assert "| Lymphocytes | 0.297 " in card["detail"] and " (derived) | L |" in card["detail"]  # the unit is escaped
    assert "automated differential of very few cells" in card["detail"]
