"""reference_ranges/context_codes.csv and what medication records state (adapters/context_codes.py).

The window is clinical-rules §11 v2 ("chemotherapy or another marrow-suppressing treatment in the last 6 weeks"):
42 days, a record dated exactly 42 days before the CBC is inside it, one second more is not. The heparin start is
clinical-rules §12 v2 `context.heparin_started_at`. Codes are checked against the sources the table cites.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest

from labservice.adapters.context_codes import (
    ATC,
    CODES_FILE,
    HEPARIN,
    LOINC,
    MYELOSUPPRESSIVE,
    RXNORM,
    WINDOW_KEY,
    MedicationExposure,
    haptoglobin_undetectable,
    load_context_codes,
    medication_context,
    presence,
    quantity_problem,
)
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()
CODES = load_context_codes(RS.directory)
CBC_AT = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
WINDOW = 42  # clinical-rules §11 v2: 6 weeks


def test_the_window_is_six_weeks_in_the_thresholds_table() -> None:
    assert RS.value(WINDOW_KEY) == WINDOW


def test_every_row_names_its_source() -> None:
    with (RS.directory / CODES_FILE).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["source"].strip() for row in rows)


@pytest.mark.parametrize(
    ("system", "code", "field"),
    [
        # LOINC platelet morphology panel 58406-0 (nmdp-ig/cibmtr-reporting-ig platelet-morphology-blood-valueset)
        (LOINC, "7796-6", "film.platelet_clumps"),
        # MIMIC-III D_LABITEMS: 50912 Creatinine 2160-0, 50884 Bilirubin, Indirect 1971-1, 50935 Haptoglobin 4542-7
        (LOINC, "2160-0", "context.creatinine_mg_dl"),
        (LOINC, "1971-1", "context.indirect_bilirubin_mg_dl"),
        (LOINC, "4542-7", "context.haptoglobin_undetectable"),
        # Synthea R4 bundles: creatinine 38483-4 in mg/dL; heparin 314659; FOLFOX oxaliplatin 1736776
        (LOINC, "38483-4", "context.creatinine_mg_dl"),
        (RXNORM, "314659", HEPARIN),
        (RXNORM, "1736776", MYELOSUPPRESSIVE),
        # WHO ATC: the cytotoxic groups of L01 (L01A, L01B, L01C, L01D, L01XA), B01AB05 enoxaparin
        (ATC, "L01XA03", MYELOSUPPRESSIVE),  # oxaliplatin, under L01XA platinum compounds
        (ATC, "L01AA01", MYELOSUPPRESSIVE),  # cyclophosphamide, under L01A alkylating agents
        (ATC, "L01BC01", MYELOSUPPRESSIVE),  # cytarabine, under L01B antimetabolites
        (ATC, "B01AB05", HEPARIN),
    ],
)
def test_listed_codes(system: str, code: str, field: str) -> None:
    assert CODES.field_of(system, code) == field


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ATC, "B01AB02"),  # antithrombin III: in the heparin group of ATC, but not heparin
        (ATC, "B01AX05"),  # fondaparinux: not a heparin
        (ATC, "L04AX03"),  # methotrexate as an immunosuppressant: not under L01
        (ATC, "L01FA01"),  # rituximab (L01F antibodies): not listed, so it never lowers a critical count's urgency
        (ATC, "L01"),  # the whole antineoplastic group is not listed, only its cytotoxic groups
        (RXNORM, "1803932"),  # leucovorin (Synthea's FOLFOX): a rescue agent, not myelosuppressive
        ("http://snomed.info/sct", "7796-6"),  # a LOINC code under another system
    ],
)
def test_codes_not_listed_state_nothing(system: str, code: str) -> None:
    assert CODES.field_of(system, code) is None


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("Present", True),
        ("LA9633-4", True),
        ("52101004", True),
        ("positive", True),
        ("  Absent ", False),
        ("LA9634-2", False),
        ("2667000", False),
        ("not detected", False),
        (True, True),
        ("maybe", None),
        (None, None),
    ],
)
def test_presence_answers(word: object, said: bool | None) -> None:
    assert presence(word) is said


@pytest.mark.parametrize(
    ("value", "comparator", "words", "undetectable"),
    [
        (10.0, "<", None, True),
        (None, "<=", None, True),
        (0.0, None, None, True),
        (35.0, None, None, False),
        (None, None, "not detected", True),
        (None, None, "detected", False),
        (None, None, None, None),
    ],
)
def test_haptoglobin_undetectable(value, comparator, words, undetectable) -> None:
    assert haptoglobin_undetectable(value, comparator, words) is undetectable


def test_quantities_must_come_in_the_contracts_unit() -> None:
    assert quantity_problem("context.creatinine_mg_dl", "mg/dL") is None
    assert quantity_problem("context.inr", "{INR}") is None and quantity_problem("context.inr", None) is None
    assert "mg/dL expected" in (quantity_problem("context.creatinine_mg_dl", "umol/L") or "")
    assert "no unit expected" in (quantity_problem("context.inr", "s") or "")


def chemo(*, start=None, end=None, running=False) -> MedicationExposure:
    return MedicationExposure(MYELOSUPPRESSIVE, start, end, running, "record")


@pytest.mark.parametrize(
    ("record", "stated"),
    [
        (chemo(start=CBC_AT - timedelta(days=19)), True),
        (chemo(start=CBC_AT - timedelta(days=WINDOW)), True),  # on the bound: within the last 6 weeks
        (chemo(start=CBC_AT - timedelta(days=WINDOW, seconds=1)), False),  # just outside
        (chemo(start=CBC_AT - timedelta(days=90), end=CBC_AT - timedelta(days=10)), True),  # ended 10 days before
        (chemo(start=CBC_AT - timedelta(days=200), running=True), True),  # still given
        (chemo(start=CBC_AT + timedelta(days=1)), False),  # started after the CBC
        (chemo(), False),  # no date and not active: says nothing
    ],
)
def test_myelosuppressive_therapy_within_six_weeks(record: MedicationExposure, stated: bool) -> None:
    context = medication_context([record], CBC_AT, WINDOW).context
    assert context.get(MYELOSUPPRESSIVE) is (True if stated else None)  # never "false": absence says nothing


def test_the_heparin_start_is_the_earliest_before_the_cbc() -> None:
    records = [
        MedicationExposure(HEPARIN, CBC_AT - timedelta(days=3), None, True, "late"),
        MedicationExposure(HEPARIN, CBC_AT - timedelta(days=6), CBC_AT - timedelta(days=3), False, "early"),
        MedicationExposure(HEPARIN, CBC_AT + timedelta(hours=1), None, True, "after"),
        MedicationExposure(HEPARIN, None, None, True, "undated"),
    ]
    stated = medication_context(records, CBC_AT, WINDOW)
    assert stated.context == {HEPARIN: CBC_AT - timedelta(days=6)}
    assert stated.locations == {HEPARIN: "early"}
    assert [where for where, _ in stated.out_of_time] == ["after"]
    assert [where for where, _ in stated.unused] == ["undated"]
    assert "heparin_in_previous_30_days" not in str(stated.context)  # never derived from records (§12)
