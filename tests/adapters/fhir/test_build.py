"""The FHIR the tests build (from MIMIC-III rows, and the OpenAPI example) is valid R4 by fhir.resources' R4B models."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle

from labservice.api.fhir import EXAMPLE
from tests.adapters.fhir.build import mimic_cbcs, mimic_transaction
from tests.shared_data import MIMIC_LABEVENTS


def test_the_mimic_transaction_bundle_is_valid_fhir():
    groups = mimic_cbcs(MIMIC_LABEVENTS)
    censored = [(key, items) for key, items in groups.items() if items.get("51265", ("",))[0].startswith("<")]
    sample = sorted(groups.items())[:20] + censored
    resource = mimic_transaction(sample)
    parsed = Bundle.model_validate(resource)
    assert parsed.type == "transaction"
    reports = [e for e in resource["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert len(reports) == len(sample)
    assert sum(len(items) for _, items in sample) == len(resource["entry"]) - len(reports)


def test_the_openapi_example_is_valid_fhir():
    assert Bundle.model_validate(EXAMPLE).type == "collection"
