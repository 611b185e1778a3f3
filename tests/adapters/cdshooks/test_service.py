"""The discovery document and the prefetch templates (CDS Hooks 2.0, "Discovery", "Prefetch Template")."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from labservice.adapters.cdshooks.service import discovery, prefetch_templates
from labservice.core.ruleset import default_ruleset
from tests.adapters.cdshooks.build import CLINICAL_RULES_CBC_CODES


def test_discovery_lists_the_patient_view_and_order_sign_services_with_the_required_fields():
    services = discovery(default_ruleset())["services"]
    # Issue 14 item 2: a second service on order-sign (clinical-rules §13 v2).
    assert [(s["hook"], s["id"]) for s in services] == [
        ("patient-view", "cbc-review"),
        ("order-sign", "platelet-order-check"),
    ]
    for service in services:
        # Discovery table: hook, description and id REQUIRED; title RECOMMENDED; prefetch OPTIONAL.
        assert isinstance(service["description"], str) and service["description"]
        assert isinstance(service["title"], str) and service["title"]
        assert all(isinstance(value, str) for value in service["prefetch"].values())


def test_the_order_check_prefetches_only_the_latest_platelet_counts():
    """clinical-rules §1: platelets are LOINC 777-3 and 26515-7; the order check needs nothing else."""
    order_check = discovery(default_ruleset())["services"][1]
    params = parse_qs(urlsplit(order_check["prefetch"]["cbcObservations"]).query)
    assert set(params["code"][0].split(",")) == {"http://loinc.org|777-3", "http://loinc.org|26515-7"}
    assert params["_sort"] == ["-date"]


def test_the_patient_template_is_a_read_of_the_patient_in_context():
    assert prefetch_templates(default_ruleset())["patient"] == "Patient/{{context.patientId}}"


def test_the_observation_template_searches_every_cbc_code_of_clinical_rules_section_1():
    template = prefetch_templates(default_ruleset())["cbcObservations"]
    resource, _, query = template.partition("?")
    assert resource == "Observation"
    params = parse_qs(query)
    assert params["patient"] == ["{{context.patientId}}"]
    codes = params["code"][0].split(",")
    assert all(code.startswith("http://loinc.org|") for code in codes)
    assert set(CLINICAL_RULES_CBC_CODES) <= {code.split("|")[1] for code in codes}
    assert params["_sort"] == ["-date"]  # most recent first
    assert int(params["_count"][0]) >= 50  # several CBCs of ~12 results each


def test_the_templates_keep_to_the_recommended_prefetch_subset():
    # "Prefetch query restrictions": reference and token (equality) parameters, _count, _sort; no
    # _include, no chained or modified parameters.
    template = prefetch_templates(default_ruleset())["cbcObservations"]
    names = set(parse_qs(urlsplit(template).query))
    assert names == {"patient", "code", "_sort", "_count"}
    assert ":" not in "".join(names)


def test_the_review_prefetches_the_patients_medication_records():
    """clinical-rules §11, §12 v2: treatment and heparin context from MedicationRequest / MedicationStatement
    (reference_ranges/context_codes.csv); a reference search on the patient only (the recommended subset)."""
    templates = prefetch_templates(default_ruleset())
    assert templates["medicationRequests"] == "MedicationRequest?patient={{context.patientId}}"
    assert templates["medicationStatements"] == "MedicationStatement?patient={{context.patientId}}"
    order_check = discovery(default_ruleset())["services"][1]
    assert set(order_check["prefetch"]) == {"patient", "cbcObservations"}


def test_the_observation_template_asks_for_the_film_and_plasmic_codes():
    """Platelet clumps 7796-6, INR 6301-6, creatinine 2160-0 / 38483-4, indirect bilirubin 1971-1, haptoglobin
    4542-7 (context_codes.csv) and schistocytes 800-3 (clinical-rules §10 v2)."""
    template = prefetch_templates(default_ruleset())["cbcObservations"]
    codes = {code.split("|")[1] for code in parse_qs(urlsplit(template).query)["code"][0].split(",")}
    assert {"800-3", "7796-6", "6301-6", "2160-0", "38483-4", "1971-1", "4542-7"} <= codes
