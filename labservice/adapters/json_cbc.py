"""Our JSON (already structurally validated) → the engine's columnar CBC table.

Converts units, checks plausibility, computes age and flattens skin lesions into the long
lesion table. Every problem is collected with its field path, so one answer names them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from labservice.adapters.cbc_schema import LABORATORY_FLAGS
from labservice.adapters.collection_time import future_message, latest_collection
from labservice.adapters.errors import InputError
from labservice.core.numbers import round_sig_scalar
from labservice.core.ranges import DAYS_PER_YEAR
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES, FILM_COLUMNS, LAB_FLAG_CODES, SCHISTOCYTE_GRADES, CbcColumns, to_columns
from labservice.core.units import UnitError, conversion_factor, implausibility_message, plausible_mask
from labservice.core.vocabulary import CTCAE_DEFAULT_VERSION

TRISTATE = {True: 1.0, False: 0.0, None: math.nan}


@dataclass
class ParsedCbcs:
    """The table for the engine, plus what was reported as sent (for the answer)."""

    columns: CbcColumns
    reported: list[dict[str, dict]]  # per row: analyte -> {"value", "unit"} as sent
    patient_ids: list[str | None]


def _age_years(patient: dict, collected_at: datetime | None, path: str, errors: dict) -> float:
    age = patient.get("age_years")
    if age is not None:
        return float(age)
    birth = patient.get("birth_date")
    if birth is None:
        return math.nan
    if collected_at is None:
        errors.setdefault(f"{path}collected_at", []).append("collected_at is needed to compute age from birth_date")
        return math.nan
    collected = collected_at.date() if isinstance(collected_at, datetime) else collected_at
    if isinstance(birth, datetime):
        birth = birth.date()
    if not isinstance(birth, date) or birth > collected:
        errors.setdefault(f"{path}patient.birth_date", []).append("birth_date is after collected_at")
        return math.nan
    return (collected - birth).days / DAYS_PER_YEAR


def read_film(film: dict, context: dict, numbers: dict[str, np.ndarray], i: int) -> None:
    """The film object and the PLASMIC context of one document into row i of the FILM_COLUMNS."""
    if film.get("schistocytes_percent") is not None:
        numbers["schistocytes_percent"][i] = float(film["schistocytes_percent"])
    if film.get("schistocytes") is not None:
        numbers["schistocytes_grade"][i] = SCHISTOCYTE_GRADES.index(film["schistocytes"])
    for key in ("blasts_seen", "platelet_count_confirmed"):
        numbers[key][i] = TRISTATE[film.get(key)]
    for key in ("active_cancer", "transplant", "haptoglobin_undetectable"):
        numbers[key][i] = TRISTATE[context.get(key)]
    for key in ("inr", "creatinine_mg_dl", "indirect_bilirubin_mg_dl"):
        if context.get(key) is not None:
            numbers[key][i] = float(context[key])


def _converted(x: float, factor: float) -> float:
    """A value in canonical units: as sent when no conversion is needed, else rounded to 6
    significant figures before any comparison (clinical-rules §1 v2: exact on bounds; 9.309 mmol/L
    haemoglobin is 15.0 g/dL, and 82 g/L is 8.2, not 8.200000000000001)."""
    return x if factor == 1.0 else round_sig_scalar(x * factor)


def _canonical_result(rs: Ruleset, analyte: str, result: dict, path: str, errors: dict):
    """(value, low, high) in canonical units, or None after recording the error."""
    value = float(result["value"])
    unit = result.get("unit")
    try:
        factor = conversion_factor(rs, analyte, unit)
    except UnitError as exc:
        errors.setdefault(f"{path}.unit", []).append(str(exc))
        return None
    if analyte == "hematocrit" and not unit and value <= rs.value("hematocrit_bare_fraction"):
        factor = 100.0  # a bare haematocrit fraction (§1)
    canonical = _converted(value, factor)
    if not plausible_mask(rs, analyte, np.array([canonical]))[0]:
        errors.setdefault(f"{path}.value", []).append(implausibility_message(rs, analyte, value, unit))
        return None
    rng = result.get("reference_range") or {}
    low = rng.get("low")
    high = rng.get("high")
    low = math.nan if low is None else _converted(float(low), factor)
    high = math.nan if high is None else _converted(float(high), factor)
    # An implausible range (low not below high, ...) is set aside by the engine, never a 422 (§2 v2).
    return canonical, low, high


def _check_collected_at(collected_at: object, latest: datetime, skew: timedelta, path: str, errors: dict) -> None:
    """A collection time after `latest` (the clock plus the allowed skew) is an error on `path`."""
    if not isinstance(collected_at, datetime):
        return
    moment = collected_at.replace(tzinfo=UTC) if collected_at.tzinfo is None else collected_at
    if moment > latest:
        errors.setdefault(path, []).append(future_message(f"collected_at {collected_at.isoformat()}", latest, skew))


def parse_documents(docs: list[dict], rs: Ruleset, *, indexed: bool, clock_skew: timedelta | None = None) -> ParsedCbcs:
    """Build the table for a list of loaded CBC documents; raise InputError naming every bad field.

    With `clock_skew`, a `collected_at` more than that after the service's clock is one of them
    (labservice.adapters.collection_time); the service's input paths always give it."""
    n = len(docs)
    errors: dict[str, list[str]] = {}
    latest = latest_collection(clock_skew) if clock_skew is not None else None
    present = {a for doc in docs for a in doc.get("results", {})}
    values = {a: np.full(n, np.nan) for a in present}
    lows = {a: np.full(n, np.nan) for a in present}
    highs = {a: np.full(n, np.nan) for a in present}
    # The laboratory's critical flags (FHIR interpretation, HL7 v2 OBX-8; clinical-rules §3 v2).
    flagged = {a for doc in docs for a in (doc.get(LABORATORY_FLAGS) or {})} & present
    lab_flags = {a: np.zeros(n, dtype=np.int8) for a in flagged}
    sex = np.full(n, "unknown", dtype="<U7")
    method = np.full(n, "unknown", dtype="<U9")
    version = np.full(n, CTCAE_DEFAULT_VERSION, dtype="<U8")
    numbers = {
        k: np.full(n, np.nan)
        for k in (
            "age_years",
            "pregnant",
            "pregnancy_trimester",
            "duffy_null",
            "fever",
            "platelet_clumps",
            "myelosuppressive_therapy",
            "marrow_cellularity",
            "marrow_residual",
            *FILM_COLUMNS,
        )
    }
    skin_reported = np.zeros(n, dtype=bool)
    lesion_rows, lesion_types, lesion_sizes, lesion_blanching, lesion_palpable, lesion_sites = [], [], [], [], [], []
    reported: list[dict[str, dict]] = []
    patient_ids: list[str | None] = []

    for i, doc in enumerate(docs):
        prefix = f"{i}." if indexed else ""
        patient = doc.get("patient") or {}
        patient_ids.append(patient.get("id"))
        sex[i] = patient.get("sex") or "unknown"
        if latest is not None and clock_skew is not None:
            _check_collected_at(doc.get("collected_at"), latest, clock_skew, f"{prefix}collected_at", errors)
        numbers["age_years"][i] = _age_years(patient, doc.get("collected_at"), prefix, errors)
        numbers["pregnant"][i] = TRISTATE[patient.get("pregnant")]
        trimester = patient.get("pregnancy_trimester")
        numbers["pregnancy_trimester"][i] = math.nan if trimester is None else trimester
        numbers["duffy_null"][i] = TRISTATE[patient.get("duffy_null")]
        if doc.get("reticulocyte_method"):
            method[i] = doc["reticulocyte_method"]
        options = doc.get("options") or {}
        if options.get("ctcae_version"):
            version[i] = options["ctcae_version"]
        film = doc.get("film") or {}
        clumps = [(doc.get("specimen") or {}).get("platelet_clumps"), film.get("platelet_clumps")]
        numbers["platelet_clumps"][i] = TRISTATE[True if True in clumps else False if False in clumps else None]
        context = doc.get("context") or {}
        numbers["myelosuppressive_therapy"][i] = TRISTATE[context.get("myelosuppressive_therapy")]
        read_film(film, context, numbers, i)
        marrow = doc.get("marrow") or {}
        for key, field in (
            ("marrow_cellularity", "cellularity_percent"),
            ("marrow_residual", "residual_hematopoietic_percent"),
        ):
            if marrow.get(field) is not None:
                numbers[key][i] = float(marrow[field])
        skin = doc.get("skin")
        if skin is not None:
            skin_reported[i] = True
            numbers["fever"][i] = TRISTATE[skin.get("fever")]
            for lesion in skin.get("lesions") or []:
                lesion_rows.append(i)
                lesion_types.append(lesion.get("type") or "")
                size = lesion.get("size_mm")
                lesion_sizes.append(math.nan if size is None else float(size))
                lesion_blanching.append(TRISTATE[lesion.get("blanching")])
                lesion_palpable.append(TRISTATE[lesion.get("palpable")])
                lesion_sites.append(lesion.get("site"))
        sent: dict[str, dict] = {}
        for analyte, result in (doc.get("results") or {}).items():
            sent[analyte] = {"value": result["value"], "unit": result.get("unit")}
            converted = _canonical_result(rs, analyte, result, f"{prefix}results.{analyte}", errors)
            if converted is not None:
                values[analyte][i], lows[analyte][i], highs[analyte][i] = converted
        for analyte, code in (doc.get(LABORATORY_FLAGS) or {}).items():
            if analyte in lab_flags:
                lab_flags[analyte][i] = LAB_FLAG_CODES[code]
        reported.append(sent)

    if errors:
        raise InputError(errors)
    table: dict[str, object] = {
        "sex": sex,
        "reticulocyte_method": method,
        "ctcae_version": version,
        "skin_reported": skin_reported,
        **numbers,
    }
    for a in present:
        table[a] = values[a]
        table[f"{a}_ref_low"] = lows[a]
        table[f"{a}_ref_high"] = highs[a]
    for a, codes in lab_flags.items():
        table[f"{a}_lab_flag"] = codes
    lesions = {
        "row": np.array(lesion_rows, dtype=np.int64),
        "type": np.array(lesion_types, dtype=object),
        "size_mm": np.array(lesion_sizes, dtype=np.float64),
        "blanching": np.array(lesion_blanching, dtype=np.float64),
        "palpable": np.array(lesion_palpable, dtype=np.float64),
        "site": np.array(lesion_sites, dtype=object),
    }
    return ParsedCbcs(to_columns(table, lesions), reported, patient_ids)


__all__ = ["ANALYTES", "ParsedCbcs", "parse_documents"]
