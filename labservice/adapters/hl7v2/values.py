"""HL7 v2 data types read as our JSON values: numbers (NM, SN), reference ranges (OBX-7), times
(DTM), dates of birth and administrative sex. Each reader returns the value or says why not."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(rf"\s*({_NUMBER})\s*\Z")
_CENSORED = re.compile(rf"\s*(<=|>=|<|>)\s*({_NUMBER})\s*\Z")
_RANGE = re.compile(rf"\s*({_NUMBER})\s*(?:-|–|to|TO|\.\.)\s*({_NUMBER})\s*\Z")
_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?\s*([+-]\d{4})?\Z")
#: OBX-2 value types whose OBX-5 may hold a count: numeric, structured numeric, and string (some
#: senders put numbers in ST), plus an empty OBX-2 when OBX-5 is a plain number.
NUMERIC_TYPES = ("NM", "SN", "ST", "")
#: HL7 table 0001 (administrative sex) → the contract's sex.
SEXES = {"F": "female", "M": "male", "U": "unknown"}
SEX_TEXTS = {"O": "other", "A": "ambiguous", "N": "not applicable", "X": "non-binary"}


@dataclass(frozen=True)
class Number:
    value: float | None
    problem: str = ""  # why there is no value, when value is None


def read_number(value_type: str, text: str, structured: list[str]) -> Number:
    """OBX-5 as a number. `structured` is OBX-5's components (for SN: comparator^num1^sep^num2)."""
    if value_type == "SN":
        comparator, first, separator, second = [*structured, "", "", "", ""][:4]
        if separator or second:
            return Number(None, f"a structured range or ratio ({text!r}) is not a single count")
        if comparator.strip() not in ("", "="):
            return Number(
                None, f"censored value {comparator.strip()}{first.strip()} (a bound, not a count) is not interpreted"
            )
        text = first
    match = _PLAIN.match(text)
    if match:
        return Number(float(match.group(1)))
    censored = _CENSORED.match(text)
    if censored:
        return Number(
            None, f"censored value {censored.group(1)}{censored.group(2)} (a bound, not a count) is not interpreted"
        )
    return Number(None, f"{text!r} is not a number")


@dataclass(frozen=True)
class Range:
    low: float | None
    high: float | None
    problem: str = ""


def read_range(text: str) -> Range:
    """OBX-7 as low/high: '150-450', '4.3 to 6.2', '<5' (high only), '>3.5' (low only)."""
    if not text.strip():
        return Range(None, None)
    both = _RANGE.match(text)
    if both:
        low, high = float(both.group(1)), float(both.group(2))
        return Range(low, high)  # low not below high: set aside by the engine with a note (§2 v2)
    bound = _CENSORED.match(text)
    if bound:
        value = float(bound.group(2))
        return Range(None, value) if bound.group(1).startswith("<") else Range(value, None)
    return Range(None, None, f"reference range {text!r} is not understood (expected e.g. 150-450, 4.3 to 6.2, <5)")


@dataclass(frozen=True)
class Moment:
    """A DTM read as an ISO 8601 date-time with a UTC offset, or why it cannot be used."""

    iso: str | None
    note: str = ""


def read_time(text: str, zone: tzinfo, zone_name: str) -> Moment:
    """An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]); without an offset it is read in `zone`."""
    match = _DTM.match(text.strip())
    if not match:
        return Moment(None, f"{text!r} is not an HL7 date/time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if day is None:
        return Moment(None, f"{text!r} gives no day")
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
        )
    except ValueError:
        return Moment(None, f"{text!r} is not a valid date/time")
    notes = []
    if hour is None:
        notes.append("date only, taken as midnight")
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 23 or minutes > 59:  # a UTC offset is less than a day (+2500 would raise in timezone())
            return Moment(None, f"{text!r} has a UTC offset that is not a valid +/-HHMM")
        aware = moment.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    else:
        aware = moment.replace(tzinfo=zone)
        notes.append(f"no UTC offset, read in {zone_name} (HL7_TIMEZONE)")
    return Moment(aware.isoformat(), "; ".join(notes))


def read_birth_date(text: str) -> tuple[str | None, str]:
    """PID-7 as YYYY-MM-DD (its time, if any, is dropped), or a note saying why not."""
    match = _DTM.match(text.strip())
    if not match or match.group(3) is None:
        return None, f"{text!r} is not a full date of birth"
    try:
        born = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None, f"{text!r} is not a valid date"
    return born.isoformat(), ""


def read_sex(code: str) -> tuple[str | None, str]:
    """PID-8 as female/male/unknown; other HL7 codes are read as unknown, with a note."""
    code = code.strip().upper()
    if not code:
        return None, ""
    if code in SEXES:
        return SEXES[code], ""
    meaning = SEX_TEXTS.get(code, "not in HL7 table 0001")
    return "unknown", (
        f"sex {code!r} ({meaning}) is read as unknown: ranges and cut-offs that depend on sex "
        "use the female and male envelope"
    )
