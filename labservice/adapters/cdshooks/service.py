"""The CDS services labservice offers, and the discovery document (`GET /cds-services`).

One service: `cbc-review` on `patient-view`. Its prefetch templates ask for the Patient (sex and
birth date choose reference ranges and cut-offs) and for the patient's recent Observations coded
with any CBC LOINC code of clinical-rules §1, newest first. The code list is the ruleset's own
(`reference_ranges/analytes.csv`, column `loinc`), so a code a laboratory adds there is asked for too.
The templates keep to the specification's recommended subset: a reference search parameter, a
token search with equality (comma = OR), `_sort` and `_count`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labservice.adapters.film_words import SCHISTOCYTE_LOINC
from labservice.core.ruleset import Ruleset

PATIENT_KEY = "patient"
OBSERVATIONS_KEY = "cbcObservations"
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
SERVICES = {CBC_REVIEW.id: CBC_REVIEW}


def cbc_codes(ruleset: Ruleset) -> list[str]:
    """Every LOINC code the ruleset maps to a CBC analyte, in table order, then the blood-film codes
    (graded schistocytes, clinical-rules §10 v2)."""
    return [code for analyte in ruleset.analytes.values() for code in analyte.loinc] + sorted(SCHISTOCYTE_LOINC)


def prefetch_templates(ruleset: Ruleset) -> dict[str, str]:
    codes = ",".join(f"{LOINC_SYSTEM}|{code}" for code in cbc_codes(ruleset))
    return {
        PATIENT_KEY: f"Patient/{PATIENT_TOKEN}",
        OBSERVATIONS_KEY: (f"Observation?patient={PATIENT_TOKEN}&code={codes}&_sort=-date&_count={OBSERVATION_COUNT}"),
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
                "prefetch": prefetch_templates(ruleset),
            }
            for service in SERVICES.values()
        ]
    }
