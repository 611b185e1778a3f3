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
#: CLOCK_SKEW_SECONDS for an app that reads the MIMIC-III demo through the service: its dates are shifted into
#: 2102-2202 for de-identification, and the service refuses a collection time ahead of its clock.
MIMIC_CLOCK_SKEW_SECONDS = 250 * 366 * 24 * 3600
