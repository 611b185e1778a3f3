"""The request body of api-contract.md, "Interpret one CBC", verbatim: shown as the example in the
OpenAPI document and used by the tests and benchmarks."""

from __future__ import annotations

from typing import Any

CONTRACT_EXAMPLE: dict[str, Any] = {
    "patient": {
        "id": "MRN-0042",
        "sex": "female",
        "age_years": 34,
        "pregnant": False,
        "pregnancy_trimester": None,
        "duffy_null": None,
    },
    "collected_at": "2026-11-20T08:30:00Z",
    "results": {
        "platelets": {"value": 45, "unit": "10*3/uL"},
        "wbc": {"value": 2.1, "unit": "10*9/L", "reference_range": {"low": 4.0, "high": 11.0}},
        "neutrophils": {"value": 0.4, "unit": "10*9/L"},
        "hemoglobin": {"value": 82, "unit": "g/L"},
        "reticulocytes": {"value": 15, "unit": "10*9/L"},
    },
    "reticulocyte_method": "automated",
    "specimen": {"platelet_clumps": False},
    "skin": {
        "fever": False,
        "lesions": [{"type": "petechiae", "size_mm": 1.5, "blanching": False, "palpable": False, "site": "lower legs"}],
    },
    "marrow": {"cellularity_percent": 15, "residual_hematopoietic_percent": None},
    "options": {"ctcae_version": "5.0"},
}
