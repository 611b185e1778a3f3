"""An ORU^R01 / ORF^R04 message → our JSON CBC documents, one per OBR group that holds a CBC result.

For each document the reader keeps where every field came from (`locations`, for errors) and what
the answer should say about its source: the OBR, the OBX behind each analyte, the results that are
not final, and notes (a time without a UTC offset, a reference range not understood). Every OBX
that is not used is reported with its code and the reason; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labservice.adapters.cbc_schema import LABORATORY_FLAG_CODES, LABORATORY_FLAGS
from labservice.adapters.film_words import SCHISTOCYTE_LOINC, grade_words, schistocyte_grade
from labservice.adapters.hl7v2.codes import LOINC_SYSTEMS, CodeMap, load_code_map
from labservice.adapters.hl7v2.context import context_codes, context_field, medication_fields, read_context_obx
from labservice.adapters.hl7v2.message import OrderGroup, ParsedMessage, Segment, check_type, parse_message
from labservice.adapters.hl7v2.problems import REQUIRED_FIELD_MISSING
from labservice.adapters.hl7v2.statuses import Status, read_status
from labservice.adapters.hl7v2.values import (
    NUMERIC_TYPES,
    read_birth_date,
    read_number,
    read_range,
    read_sex,
    read_time,
)
from labservice.core.ruleset import Ruleset

#: Identifier types preferred for the patient id in PID-3 (HL7 table 0203: medical record number).
PREFERRED_ID_TYPES = ("MR",)


@dataclass(frozen=True)
class ReadSettings:
    ruleset: Ruleset
    codes: CodeMap
    zone: tzinfo
    zone_name: str


def read_settings(ruleset: Ruleset, local_codes: str | Path | None = None, zone_name: str = "UTC") -> ReadSettings:
    """Settings from configuration: HL7_LOCAL_CODES (a CSV file, or empty) and HL7_TIMEZONE (an IANA
    zone for times sent without a UTC offset). Raises ValueError (LocalCodeError) naming what is wrong."""
    zone_name = zone_name or "UTC"
    try:
        zone: tzinfo = UTC if zone_name.upper() == "UTC" else ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"HL7_TIMEZONE {zone_name!r} is not a time zone (e.g. UTC, Europe/London)") from None
    return ReadSettings(ruleset, load_code_map(ruleset, local_codes or None), zone, zone_name)


@dataclass
class Hl7Cbc:
    document: dict[str, Any]  # our JSON CBC document (strings for times), ready for CBC_SCHEMA
    locations: dict[str, str]  # document field path -> location in the message
    source: dict[str, Any]  # the answer's `source` block


@dataclass
class Hl7Read:
    parsed: ParsedMessage
    cbcs: list[Hl7Cbc]
    unused: list[dict[str, Any]]
    #: Content errors found while reading (an OBX-5 that is not a number, OBX-6 empty): location -> messages.
    errors: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)  # HL7 table 0357 code per error location


def read_message(text: str, settings: ReadSettings) -> Hl7Read:
    """Read normalised message text (see text.normalise). Raises Hl7Problem for a message that is
    not HL7 or not a type read here; content problems are left in `errors` for the caller."""
    parsed = parse_message(text)
    check_type(parsed.header)
    return read_parsed(parsed, settings)


def read_parsed(parsed: ParsedMessage, settings: ReadSettings) -> Hl7Read:
    """The documents of a parsed message whose type was checked (see read_message)."""
    read = Hl7Read(parsed, [], [])
    read_rxa: set[str] = set()  # RXA segments some CBC read (one patient's RXA serves all its order groups)
    for number, start in parsed.ignored_lines:
        read.unused.append({"location": f"line {number}", "reason": f"not an HL7 segment ({start!r}); ignored"})
    for obx in parsed.stray_observations:
        read.unused.append(_observation_entry(obx, "an OBX outside any order group (no OBR before it)"))
    for group in parsed.groups:
        cbc = _read_group(group, settings, read, read_rxa)
        if cbc is not None:
            read.cbcs.append(cbc)
    # An RXA is listed as unused once, and only when no CBC of the message read it (a patient's RXA serves
    # every order group of that patient, dated inside one CBC's window and outside another's).
    listed: set[str] = set()
    kept = []
    for entry in read.unused:
        location = entry.get("location", "")
        if location.startswith("RXA["):
            if location in read_rxa or location in listed:
                continue
            listed.add(location)
        kept.append(entry)
    read.unused = kept
    return read


def _read_group(group: OrderGroup, settings: ReadSettings, read: Hl7Read, read_rxa: set[str]) -> Hl7Cbc | None:
    obr = group.obr.location
    results: dict[str, dict[str, Any]] = {}
    locations: dict[str, str] = {"": obr, "results": obr}
    observations: dict[str, str] = {}
    non_final: list[dict[str, str]] = []
    notes: list[str] = []
    times: list[tuple[str, str]] = []  # (OBX-14, location) of the results used
    statuses: dict[str, Status] = {}
    film: dict[str, Any] = {}
    context: dict[str, Any] = {}
    lab_flags: dict[str, str] = {}
    codes = context_codes(settings.ruleset)
    for obx in group.observations:
        if _is_film(obx):
            _read_film(obx, film, locations, read)
            continue
        name = context_field(obx, codes)  # platelet clumps, PLASMIC items (clinical-rules §8, §10 v2)
        if name is not None:
            problem = read_context_obx(obx, name, film, context, locations)
            if problem is not None:
                read.unused.append(_observation_entry(obx, problem))
            else:
                observations[name] = obx.location
            continue
        result = _read_observation(obx, settings, read)
        if result is None:
            continue
        analyte, value, status = result
        where = obx.location
        if analyte in results:
            if statuses[analyte].final or not status.final:
                read.unused.append(
                    _observation_entry(
                        obx,
                        f"a second {analyte} result in this order group; the first ({observations[analyte]}) is used",
                        analyte,
                    )
                )
                continue
            read.unused.append(
                {
                    "location": observations[analyte],
                    "analyte": analyte,
                    "reason": f"{analyte}: replaced by the final result of the same order group ({where})",
                }
            )
            non_final[:] = [entry for entry in non_final if entry["analyte"] != analyte]
            times[:] = [entry for entry in times if not entry[1].startswith(observations[analyte] + "-")]
        results[analyte], statuses[analyte], observations[analyte] = value, status, where
        locations.update(
            {
                f"results.{analyte}": where,
                f"results.{analyte}.value": f"{where}-5",
                f"results.{analyte}.unit": f"{where}-6",
                f"results.{analyte}.reference_range": f"{where}-7",
            }
        )
        if not status.final:
            non_final.append(
                {"analyte": analyte, "observation": where, "status": status.code, "meaning": status.meaning}
            )
        flags = [obx.get(8, 1, k).upper() for k in range(1, obx.repetitions(8) + 1)]
        critical = next((code for code in flags if code in LABORATORY_FLAG_CODES), None)
        if critical is not None:
            lab_flags[analyte] = critical  # OBX-8 LL / HH / AA, honoured by the engine (clinical-rules §3 v2)
            locations[f"{LABORATORY_FLAGS}.{analyte}"] = f"{where}-8"
        else:
            lab_flags.pop(analyte, None)
        span = read_range(obx.get(7))
        if span.problem:
            notes.append(f"{where}-7: {span.problem}; the fallback range is used")
        elif span.low is not None or span.high is not None:
            value["reference_range"] = {"low": span.low, "high": span.high}
        if obx.get(14):
            times.append((obx.get(14), f"{where}-14"))
    if not results:
        read.unused.append(
            {"location": obr, **_coded(group.obr, 4), "reason": "no CBC result read in this order group"}
        )
        return None
    document: dict[str, Any] = {}
    collected, collected_from = _collection_time(group, times, settings, notes)
    if collected:
        document["collected_at"] = collected
        locations["collected_at"] = collected_from
    patient = _patient(group.patient, collected is not None, locations, notes)
    if patient:
        document["patient"] = patient
    document["results"] = results
    if group.medications:  # RXA: myelosuppressive therapy, heparin exposure (clinical-rules §11, §12 v2)
        stated, stated_at, not_stating, supporting = medication_fields(
            group.medications, collected, settings.ruleset, settings.zone, settings.zone_name
        )
        read_rxa.update(supporting)
        context.update(stated)
        locations.update(stated_at)
        observations.update({name: at.rsplit("-", 1)[0] for name, at in stated_at.items()})
        read.unused.extend(not_stating)
    if film:
        document["film"] = film
        observations.update(
            {f"film.{key}": locations[f"film.{key}"].rsplit("-", 1)[0] for key in film if f"film.{key}" in locations}
        )
    if context:
        document["context"] = context
    if lab_flags:
        document[LABORATORY_FLAGS] = lab_flags
    source = {
        "obr": obr,
        "order": _coded(group.obr, 4),
        "observations": observations,
        "non_final": non_final,
        "collected_at": collected_from if collected else None,
        "notes": notes,
    }
    return Hl7Cbc(document, locations, source)


def _is_film(obx: Segment) -> bool:
    """A schistocyte OBX (LOINC 800-3 in OBX-3, adapters/film_words.py), read as film, not as a count."""
    return any(obx.get(3, k) in SCHISTOCYTE_LOINC and obx.get(3, k + 2).upper() in LOINC_SYSTEMS for k in (1, 4))


def _read_film(obx: Segment, film: dict[str, Any], locations: dict[str, str], read: Hl7Read) -> None:
    """Schistocytes (clinical-rules §10 v2): graded words in OBX-5 (CWE/CE code or text, ST, TX: occasional,
    1+, few -> present; 2+ and above, many, numerous -> many), or a number with OBX-6 `%`."""
    where = obx.location
    status = read_status(obx.get(11))
    if not status.used:
        read.unused.append(_observation_entry(obx, f"schistocytes: result status {status.code} ({status.meaning})"))
        return
    if "schistocytes" in film or "schistocytes_percent" in film:
        read.unused.append(_observation_entry(obx, "schistocytes: a second result in this order group"))
        return
    value_type = obx.get(2).upper()
    if value_type in ("NM", "SN"):
        number = read_number(value_type, obx.get(5) if value_type != "SN" else obx.field(5), [])
        unit = obx.get(6, 1) or obx.get(6, 2)
        if number.value is not None and unit == "%" and 0 <= number.value <= 100:
            film["schistocytes_percent"] = number.value
            locations["film.schistocytes_percent"] = f"{where}-5"
        else:
            read.unused.append(_observation_entry(obx, "schistocytes: not a percentage of red cells (OBX-6 %)"))
        return
    words = [obx.get(5, 1), obx.get(5, 2)] if value_type in ("CWE", "CE", "CNE") else [obx.get(5)]
    grades = [grade for word in words if word and (grade := schistocyte_grade(word))]
    if grades:
        film["schistocytes"] = grades[0]
        locations["film.schistocytes"] = f"{where}-5"
    else:
        shown = next((w for w in words if w), "")
        read.unused.append(_observation_entry(obx, f"schistocytes: {shown!r} is not a grade ({grade_words()})"))


def _read_observation(obx: Segment, settings: ReadSettings, read: Hl7Read) -> tuple[str, dict[str, Any], Status] | None:
    """(analyte, result, status) for a usable OBX; otherwise report it (unused or error) and return None."""
    identified = _identify(obx, settings)
    if isinstance(identified, str):
        read.unused.append(_observation_entry(obx, identified))
        return None
    analyte, local_unit = identified
    status = read_status(obx.get(11))
    value_text = obx.field(5).strip()
    if not status.used:
        what = "no value" if not value_text else "its value is not used"
        read.unused.append(
            _observation_entry(
                obx, f"{analyte}: result status {status.code} ({status.meaning}); {what}: not assessed", analyte
            )
        )
        return None
    if not value_text:
        read.unused.append(_observation_entry(obx, f"{analyte}: no value in OBX-5: not assessed", analyte))
        return None
    value_type = obx.get(2).upper()
    if value_type not in NUMERIC_TYPES:
        read.unused.append(
            _observation_entry(obx, f"{analyte}: value type {value_type} is not numeric (NM or SN)", analyte)
        )
        return None
    components = [obx.get(5, k) for k in range(1, 5)]
    number = read_number(value_type, obx.get(5) if value_type != "SN" else obx.field(5), components)
    if number.value is None:
        if value_type == "ST" or number.problem.startswith(("censored", "a structured")):
            read.unused.append(_observation_entry(obx, f"{analyte}: {number.problem}: not assessed", analyte))
        else:
            read.errors.setdefault(f"{obx.location}-5", []).append(f"{analyte}: {number.problem}")
        return None
    unit = obx.get(6, 1) or obx.get(6, 2) or local_unit
    if not unit:
        read.errors.setdefault(f"{obx.location}-6", []).append(
            f"{analyte}: no unit in OBX-6, and none is configured for code {obx.get(3)!r}; a unit is never "
            "assumed (give one in OBX-6, or in the local-code map's unit column)"
        )
        read.codes[f"{obx.location}-6"] = REQUIRED_FIELD_MISSING
        return None
    return analyte, {"value": number.value, "unit": unit}, status


def _identify(obx: Segment, settings: ReadSettings) -> tuple[str, str] | str:
    """(analyte, unit to assume when OBX-6 is empty) from OBX-3's identifier or alternate
    identifier; or the reason the code is not read."""
    loinc = settings.ruleset.analyte_by_loinc()
    triplets = [(obx.get(3, 1), obx.get(3, 2), obx.get(3, 3)), (obx.get(3, 4), obx.get(3, 5), obx.get(3, 6))]
    for code, _text, system in triplets:
        if not code:
            continue
        local = settings.codes.lookup(code, system)
        if local is not None:
            return local.analyte, local.unit
        if system.upper() in LOINC_SYSTEMS and code in loinc:
            return loinc[code], ""
    code, text, system = triplets[0]
    if not code:
        return "no code in OBX-3"
    named = f" ({text!r})" if text else ""
    if system.upper() in LOINC_SYSTEMS:
        return (
            f"LOINC {code}{named} is not one of the CBC codes read (clinical-rules §1); a site whose "
            "sender uses it for a count can map it in HL7_LOCAL_CODES"
        )
    return (
        f"code {code!r}{named}{f' of coding system {system}' if system else ''} is not in the local-code "
        "map (reference_ranges/hl7_local_codes.csv, HL7_LOCAL_CODES)"
    )


def _collection_time(
    group: OrderGroup, times: list[tuple[str, str]], settings: ReadSettings, notes: list[str]
) -> tuple[str | None, str]:
    """Specimen collection time: OBR-7, else SPM-17, else the earliest OBX-14 of the results used."""
    candidates = [(group.obr.get(7), f"{group.obr.location}-7")]
    candidates += [(spm.get(17), f"{spm.location}-17") for spm in group.specimens]
    for text, where in candidates:
        if text:
            moment = read_time(text, settings.zone, settings.zone_name)
            if moment.note:
                notes.append(f"{where}: {moment.note}")
            if moment.iso:
                return moment.iso, where
    observed = []
    for text, where in times:
        moment = read_time(text, settings.zone, settings.zone_name)
        if moment.iso:
            observed.append((datetime.fromisoformat(moment.iso), where, moment))
    if observed:
        earliest = min(observed, key=lambda item: item[0])  # the first in message order on a tie
        _, where, moment = earliest
        if moment.note:
            notes.append(f"{where}: {moment.note}")
        if len({item[0] for item in observed}) > 1:
            notes.append(f"{where}: the results used carry different times (OBX-14); the earliest is taken")
        return moment.iso, where
    notes.append(
        f"{group.obr.location}: no collection time (OBR-7, SPM-17, OBX-14): delta checks and age "
        "from the date of birth are not assessed"
    )
    return None, ""


def _patient(pid: Segment | None, has_time: bool, locations: dict[str, str], notes: list[str]) -> dict[str, Any]:
    if pid is None:
        notes.append("no PID segment: no patient id (not stored), sex or age")
        return {}
    where = pid.location
    locations["patient"] = where
    patient: dict[str, Any] = {}
    identifier = _patient_id(pid)
    if identifier:
        patient["id"] = identifier
        locations["patient.id"] = f"{where}-3"
    else:
        notes.append(f"{where}-3: no patient identifier: the result is interpreted, not stored")
    sex, note = read_sex(pid.get(8))
    if sex:
        patient["sex"] = sex
        locations["patient.sex"] = f"{where}-8"
    if note:
        notes.append(f"{where}-8: {note}")
    if pid.get(7):
        born, note = read_birth_date(pid.get(7))
        if note:
            notes.append(f"{where}-7: {note}; age not known")
        elif not has_time:
            notes.append(f"{where}-7: the age needs a collection time; age not known")
        else:
            patient["birth_date"] = born
            locations["patient.birth_date"] = f"{where}-7"
    return patient


def _patient_id(pid: Segment) -> str:
    """PID-3's identifier: the first medical record number (CX.5 = MR), else the first one."""
    count = pid.repetitions(3)
    for repetition in range(1, count + 1):
        if pid.get(3, 5, repetition).upper() in PREFERRED_ID_TYPES and pid.get(3, 1, repetition):
            return pid.get(3, 1, repetition)
    return pid.get(3, 1)


def _coded(segment: Segment, number: int) -> dict[str, str]:
    return {"code": segment.get(number, 1), "text": segment.get(number, 2), "coding_system": segment.get(number, 3)}


def _observation_entry(obx: Segment, reason: str, analyte: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"location": obx.location, **_coded(obx, 3)}
    if analyte:
        entry["analyte"] = analyte
    entry.update(
        {"value_type": obx.get(2), "value": obx.get(5), "unit": obx.get(6), "status": obx.get(11), "reason": reason}
    )
    return entry
