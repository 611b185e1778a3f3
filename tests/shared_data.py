"""Where the shared real-client fixtures and rules live: ../shared next to the checkout, or LABSERVICE_SHARED."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    os.environ.get("LABSERVICE_SHARED", ""),
    str(Path(__file__).resolve().parents[2] / "shared"),  # ../shared beside the repository
    "/work/shared",  # this project's machines
]
SHARED = next((Path(c) for c in _CANDIDATES if c and (Path(c) / "fixtures").is_dir()), Path("/work/shared"))
FIXTURES = SHARED / "fixtures"
MIMIC_LABEVENTS = FIXTURES / "mimic-iii-demo" / "LABEVENTS.csv"
#: The mapping a client sends with LABEVENTS.csv: its long columns, and the CBC ITEMIDs of D_LABITEMS.csv.
MIMIC_MAPPING: dict = {
    "shape": "long",
    "columns": {
        "HADM_ID": "sample_id",
        "CHARTTIME": "collected_at",
        "ITEMID": "item",
        "VALUE": "value",
        "VALUEUOM": "unit",
    },
    "items": {
        "51265": "platelets",
        "51301": "wbc",
        "51222": "hemoglobin",
        "51221": "hematocrit",
        "51279": "rbc",
        "51250": "mcv",
        "51248": "mch",
        "51249": "mchc",
        "51277": "rdw",
        "51256": "neutrophils_percent",
        "51283": "reticulocytes_percent",
    },
}
#: CLOCK_SKEW_SECONDS for an app that reads the MIMIC-III demo through the service: its dates are shifted into
#: 2102-2202 for de-identification, and the service refuses a collection time ahead of its clock.
MIMIC_CLOCK_SKEW_SECONDS = 250 * 366 * 24 * 3600
