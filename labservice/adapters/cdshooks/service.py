"""The CDS services labservice offers, and the discovery document (`GET /cds-services`).

Two services: `cbc-review` on `patient-view`, and `platelet-order-check` on `order-sign` (clinical-rules §13
v2; its prefetch reads only the platelet counts). `cbc-review`: Its prefetch templates ask for the Patient (sex and
birth date choose reference ranges and cut-offs) and for the patient's recent Observations coded
with any CBC LOINC code of clinical-rules §1, newest first. The code list is the ruleset's own
(`reference_ranges/analytes.csv`, column `loinc`), so a code a laboratory adds there is asked for too.
The templates keep to the specification's recommended subset: a reference search parameter, a
token search with equality (comma = OR), `_sort` and `_count`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labservice.adapters.context_codes import load_context_codes
from labservice.adapters.film_words import SCHISTOCYTE_LOINC
from labservice.core.ruleset import Ruleset

PATIENT_KEY = "patient"
OBSERVATIONS_KEY = "cbcObservations"
#: The patient's medication records, for the treatment and heparin context (clinical-rules §11, §12 v2;
#: reference_ranges/context_codes.csv). Optional: a client that sends neither key and has no fhirServer still
#: gets its card, read without that context.
MEDICATION_KEYS = {
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
}
PATIENT_TOKEN = "{{context.patientId}}"
LOINC_SYSTEM = "http://loinc.org"
#: Observations asked for, newest first: several CBCs of up to ~15 analytes each. Prefetch answers
#: carry no next-page link, so this is all the service sees; only the most recent CBC is reviewed.
OBSERVATION_COUNT = 100


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str


CBC_REVIEW = CdsService(
    id="cbc-review",
    hook="patient-view",
    title="CBC review (labservice)",
    description=(
        "Reviews the patient's most recent complete blood count: cytopenias and their grades, critical "
        "values, laboratory pitfalls such as EDTA pseudothrombocytopenia, and an urgency, each citing its "
        "rule and source, with the reflex tests those rules suggest. It describes counts; it never "
        "diagnoses. Nothing is stored."
    ),
)
PLATELET_ORDER_CHECK = CdsService(
    id="platelet-order-check",
    hook="order-sign",
    title="Platelet count before signing an order (labservice)",
    description=(
        "When an order is signed for neuraxial anaesthesia, a lumbar puncture, major surgery, a central venous "
        "catheter or therapeutic-dose anticoagulation, and the patient's latest platelet count is below the "
        "threshold for that group of orders (British Society for Haematology 2017, ISTH 2018), a card states the "
        "count, its date, the threshold and its source, and asks for a review before signing. Which order codes "
        "belong to each group is configuration (reference_ranges/order_codes.csv). Nothing is stored."
    ),
)
SERVICES = {CBC_REVIEW.id: CBC_REVIEW, PLATELET_ORDER_CHECK.id: PLATELET_ORDER_CHECK}
#: The analyte the order check reads.
PLATELETS = "platelets"


def cbc_codes(ruleset: Ruleset) -> list[str]:
    """Every LOINC code the ruleset maps to a CBC analyte, in table order, then the blood-film codes
    (graded schistocytes, clinical-rules §10 v2) and the film and PLASMIC codes of context_codes.csv (platelet
    clumps, INR, creatinine, indirect bilirubin, haptoglobin)."""
    extra = sorted(SCHISTOCYTE_LOINC | load_context_codes(ruleset.directory).observation_codes())
    return [code for analyte in ruleset.analytes.values() for code in analyte.loinc] + extra


def prefetch_templates(ruleset: Ruleset, service: CdsService = CBC_REVIEW) -> dict[str, str]:
    """The Patient and the Observations a service reads: every CBC code for cbc-review, the platelet codes
    (the latest few counts) for the order check."""
    if service.id == PLATELET_ORDER_CHECK.id:
        platelet_codes = ",".join(f"{LOINC_SYSTEM}|{code}" for code in ruleset.analytes[PLATELETS].loinc)
        return {
            PATIENT_KEY: f"Patient/{PATIENT_TOKEN}",
            OBSERVATIONS_KEY: f"Observation?patient={PATIENT_TOKEN}&code={platelet_codes}&_sort=-date&_count=10",
        }
    codes = ",".join(f"{LOINC_SYSTEM}|{code}" for code in cbc_codes(ruleset))
    return {
        PATIENT_KEY: f"Patient/{PATIENT_TOKEN}",
        OBSERVATIONS_KEY: (f"Observation?patient={PATIENT_TOKEN}&code={codes}&_sort=-date&_count={OBSERVATION_COUNT}"),
        **MEDICATION_KEYS,
    }


def discovery(ruleset: Ruleset) -> dict[str, Any]:
    """The discovery response: {"services": [{hook, title, description, id, prefetch}]}."""
    return {
        "services": [
            {
                "hook": service.hook,
                "title": service.title,
                "description": service.description,
                "id": service.id,
                "prefetch": prefetch_templates(ruleset, service),
            }
            for service in SERVICES.values()
        ]
    }
