"""The built-in MIMIC-III mapping (labservice/batch/mappings/mimic-iii-labevents.json) reads lymphocyte %.

clinical-rules §1 v2: "absolute lymphocytes likewise from lymphocyte % (LOINC 736-9 or 26478-8; MIMIC item 51244
"Lymphocytes", in %); a derived count from a WBC below 1.0 is marked `imprecise: true`". Issue 13: "MIMIC's
lymphocyte % must now be used". MIMIC-III Clinical Database Demo v1.4 (PhysioNet, MIT-LCP), ODbL 1.0: see
../shared/fixtures. Expected flags come from the raw rows and the rules (§2 adult lymphocytes 1.0-3.0, no age in
MIMIC), never from running the code.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from importlib.resources import files

import pytest

from labservice.batch import load_mapping_file, run_batch
from tests.shared_data import MIMIC_LABEVENTS

WBC, LYMPH_PCT, LYMPH_ABS = "51301", "51244", "51133"
LYMPH_LOW, LYMPH_HIGH = 1.0, 3.0  # §2 adult fallback range
IMPRECISE_BELOW_WBC = 1.0  # §1 v2
EPS = 1e-6

pytestmark = pytest.mark.skipif(not MIMIC_LABEVENTS.exists(), reason="MIMIC-III demo fixture not present")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@pytest.fixture(scope="module")
def groups() -> dict[tuple[str, str], dict[str, list[str]]]:
    """(HADM_ID, CHARTTIME) -> ITEMID -> the VALUE texts, for the rows with an admission."""
    out: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    with MIMIC_LABEVENTS.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["HADM_ID"]:
                out[(row["HADM_ID"], row["CHARTTIME"])][row["ITEMID"]].append(row["VALUE"])
    return out


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], dict]:
    mapping = files("labservice.batch") / "mappings" / "mimic-iii-labevents.json"
    options = load_mapping_file(str(mapping))
    json_out = io.StringIO()
    with MIMIC_LABEVENTS.open("rb") as handle:
        run_batch(handle, csv_out=io.StringIO(), json_out=json_out, options=options)
    return {
        (r["ids"]["HADM_ID"], r["ids"]["CHARTTIME"]): r
        for r in json.loads(json_out.getvalue())
        if r["ids"].get("HADM_ID")
    }


def test_the_builtin_mapping_names_item_51244_as_lymphocyte_percent() -> None:
    mapping = json.loads((files("labservice.batch") / "mappings" / "mimic-iii-labevents.json").read_text())
    assert mapping["items"]["51244"] == "lymphocytes_percent"


def test_lymphocytes_are_derived_from_wbc_and_lymphocyte_percent(groups, rows) -> None:
    checked = imprecise_seen = 0
    for key, items in groups.items():
        if LYMPH_ABS in items or len(items.get(WBC, [])) != 1 or len(items.get(LYMPH_PCT, [])) != 1:
            continue
        wbc, pct = _number(items[WBC][0]), _number(items[LYMPH_PCT][0])
        row = rows[key]
        if wbc is None or pct is None or row["error"]:
            continue
        derived = wbc * pct / 100
        if any(abs(derived - bound) < EPS for bound in (LYMPH_LOW, LYMPH_HIGH)):
            continue
        expected = "L" if derived < LYMPH_LOW else "H" if derived > LYMPH_HIGH else "N"
        assert row["flags"]["lymphocytes"] == expected, (key, wbc, pct, row)
        assert "lymphocytes derived from a percentage (not measured)" in row["notes"]
        imprecise = wbc < IMPRECISE_BELOW_WBC
        assert ("lymphocytes imprecise" in row["notes"]) is imprecise, (key, wbc, row["notes"])
        imprecise_seen += imprecise
        checked += 1
    assert checked > 300  # the demo has 547 rows of item 51244, most beside a WBC of the same draw
    assert imprecise_seen >= 1  # the demo holds WBC below 1.0 beside a lymphocyte %
