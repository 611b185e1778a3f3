"""The FHIR R4 answer Bundle (labservice.adapters.fhir.output.to_bundle), checked with fhir.resources R4B.

Expected flags come from clinical-rules.md: section 2 (a value outside the range in use is L/H; the
laboratory's range comes first) and section 3 (LL only below the critical limits, e.g. neutrophils < 0.5).
"""

from __future__ import annotations

import copy
import importlib

import pytest
from fhir.resources.R4B.bundle import Bundle

from labservice.adapters.fhir.output import to_bundle
from labservice.adapters.fhir.terminology import INTERPRETATION_SYSTEM
from labservice.core.ruleset import default_ruleset
from tests.adapters.fhir.test_output_builders import interpret, spec_example_read, us_core_read


def validate(bundle: dict) -> None:
    """Every resource on its own, then the whole Bundle, through the R4B models."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
    Bundle.model_validate(bundle)


def by_type(bundle: dict, resource_type: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def flag_of(observation: dict) -> str | None:
    codes = [c["code"] for i in observation.get("interpretation", []) for c in i["coding"]
             if c["system"] == INTERPRETATION_SYSTEM]
    assert len(codes) <= 1
    return codes[0] if codes else None


def test_spec_example_bundle_is_valid_and_annotated():
    read, bundle_in = spec_example_read()
    original = copy.deepcopy(bundle_in)
    bundle = to_bundle(read, interpret(read), default_ruleset())
    validate(bundle)
    assert bundle["type"] == "collection"
    observations = {e["resource"]["id"]: e for e in by_type(bundle, "Observation")}
    # fullUrls of the client's Bundle are kept
    assert observations["r9"]["fullUrl"] == "https://example.com/base/Observation/r9"
    # Neutrophils 0.9 x10*9/L against the lab's 2.0-7.5: low, but not below the critical 0.5 (§3) -> L, not LL
    assert flag_of(observations["r9"]["resource"]) == "L"
    # Lymphocytes 0.9 against 1.1-4.0 -> L; haemoglobin 176 g/L in 135-180 -> N; platelets 444 in 150-450 -> N
    assert flag_of(observations["r11"]["resource"]) == "L"
    assert flag_of(observations["r1"]["resource"]) == "N"
    assert flag_of(observations["r6"]["resource"]) == "N"
    # Haematocrit 55 % (38-52), MCV 99 fL (80-98), MCH 36 pg (27-35) -> H
    assert [flag_of(observations[i]["resource"]) for i in ("r3", "r4", "r5")] == ["H", "H", "H"]
    # The lab's range was used, in the Observation's own unit (haemoglobin in g/L)
    haemoglobin_range = observations["r1"]["resource"]["referenceRange"][0]
    assert (haemoglobin_range["low"]["value"], haemoglobin_range["high"]["value"]) == (135, 180)
    assert haemoglobin_range["low"]["code"] == "g/L"
    assert "laboratory" in haemoglobin_range["text"]
    assert bundle_in == original  # the input is never modified
