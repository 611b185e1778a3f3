"""The names every layer shares: analytes, urgencies, finding codes, urgency reasons, CTCAE versions.

Finding codes, urgency reasons and CTCAE versions are read from the packaged rule tables
(`reference_ranges/findings.csv`, `ctcae.csv`), so a finding declared in its table row is known to
the HTTP enums, the dashboard and the tests without another list. This module reads only the few
columns it needs with the standard library; the ruleset loader (`core.ruleset`) validates the same
files in full and the app refuses to start on a bad row.
"""

from __future__ import annotations

import csv
from enum import StrEnum

from labservice.rule_tables import packaged_directory


class Analyte(StrEnum):
    """Result keys of the contract, in its order (absolute counts unless named _percent)."""

    PLATELETS = "platelets"
    WBC = "wbc"
    NEUTROPHILS = "neutrophils"
    LYMPHOCYTES = "lymphocytes"
    HEMOGLOBIN = "hemoglobin"
    HEMATOCRIT = "hematocrit"
    RBC = "rbc"
    MCV = "mcv"
    MCH = "mch"
    MCHC = "mchc"
    RDW = "rdw"
    RETICULOCYTES = "reticulocytes"
    RETICULOCYTES_PERCENT = "reticulocytes_percent"
    NEUTROPHILS_PERCENT = "neutrophils_percent"
    RDW_SD = "rdw_sd"  # clinical-rules §1 v2: RDW-SD in fL, LOINC 21000-5
    LYMPHOCYTES_PERCENT = "lymphocytes_percent"  # clinical-rules §1 v2: derives absolute lymphocytes
    # The differential beyond the five-part count (clinical-rules §10 v2), per 100 leukocytes.
    BLASTS_PERCENT = "blasts_percent"
    PROMYELOCYTES_PERCENT = "promyelocytes_percent"
    MYELOCYTES_PERCENT = "myelocytes_percent"
    METAMYELOCYTES_PERCENT = "metamyelocytes_percent"
    BANDS_PERCENT = "bands_percent"
    NRBC_PER_100_WBC = "nrbc_per_100_wbc"


class Urgency(StrEnum):
    """Overall urgency of a CBC (clinical-rules §9), from the lowest to the highest."""

    ROUTINE = "routine"
    SOON = "soon"
    URGENT = "urgent"
    IMMEDIATE = "immediate"

    @property
    def rank(self) -> int:
        """0 routine ... 3 immediate: the order in which urgencies compare."""
        return URGENCY_NAMES.index(self.value)


ANALYTES: tuple[str, ...] = tuple(a.value for a in Analyte)
#: Urgency names by rank (index 0 = routine), as the engine's int8 urgency column indexes them.
URGENCY_NAMES: tuple[str, ...] = tuple(u.value for u in Urgency)
#: Urgencies from the highest, as the worklist, the dashboard and the HTTP enums list them.
URGENCIES: tuple[str, ...] = tuple(reversed(URGENCY_NAMES))
URGENCY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(URGENCY_NAMES)}
#: The finding kinds of findings.csv: reported by the engine, an urgency reason only, a delta check, a rule over
#: the patient's stored history that may raise the urgency (clinical-rules §3, §12 v2; labservice.core.history).
FINDING, REASON, DELTA, HISTORY = "finding", "reason", "delta", "history"
FINDING_KINDS = (FINDING, REASON, DELTA, HISTORY)
#: The CTCAE version applied when a request names none (clinical-rules §4); ctcae.csv must have it.
CTCAE_DEFAULT_VERSION = "5.0"


def _rows(name: str) -> list[dict[str, str]]:
    with (packaged_directory() / name).open(newline="", encoding="utf-8-sig") as handle:
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]


def _findings_in_order() -> list[dict[str, str]]:
    rows = [row for row in _rows("findings.csv") if row.get("code")]
    return sorted(rows, key=lambda row: float(row["order"]))


_FINDING_ROWS = _findings_in_order()
#: Finding codes the engine reports, in report order.
ENGINE_FINDING_CODES: tuple[str, ...] = tuple(r["code"] for r in _FINDING_ROWS if r["kind"] == FINDING)
#: Finding codes of the delta checks against the previous CBC.
DELTA_FINDING_CODES: tuple[str, ...] = tuple(r["code"] for r in _FINDING_ROWS if r["kind"] == DELTA)
#: Finding codes of the rules over the patient's stored history (a history row without a title is an urgency
#: reason only, e.g. known_critical_value).
HISTORY_FINDING_CODES: tuple[str, ...] = tuple(r["code"] for r in _FINDING_ROWS if r["kind"] == HISTORY and r["title"])
#: Every finding code an answer may carry: the engine's, then the delta checks', then the history rules'.
FINDING_CODES: tuple[str, ...] = ENGINE_FINDING_CODES + DELTA_FINDING_CODES + HISTORY_FINDING_CODES
#: Urgency reason codes (`urgency_reasons` of an answer), in the order an answer lists them: the engine's, then
#: those the history rules give a stored CBC.
URGENCY_REASONS: tuple[str, ...] = tuple(
    r["reason"] for r in _FINDING_ROWS if r["kind"] in (FINDING, REASON) and r["reason"]
) + tuple(r["reason"] for r in _FINDING_ROWS if r["kind"] == HISTORY and r["reason"])
#: CTCAE versions defined by ctcae.csv.
CTCAE_VERSIONS: tuple[str, ...] = tuple(sorted({r["version"] for r in _rows("ctcae.csv") if r.get("version")}))
