"""HL7 v2 data types: OBX-5 numbers (NM, SN), OBX-7 ranges, DTM times, PID-7 and PID-8."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from labservice.adapters.hl7v2.values import read_birth_date, read_number, read_range, read_sex, read_time


@pytest.mark.parametrize(
    ("value_type", "text", "components", "expected"),
    [
        ("NM", "45", ["45"], 45.0),  # nHapi PLTC
        ("NM", "105600", ["105600"], 105600.0),  # NIST LRI WBC
        ("NM", " 12.5 ", ["12.5"], 12.5),
        ("NM", "+4.0", ["+4.0"], 4.0),
        ("NM", ".5", [".5"], 0.5),
        ("", "221", ["221"], 221.0),  # no OBX-2 but a plain number
        ("ST", "13.0", ["13.0"], 13.0),  # numbers sent as strings
        ("SN", "^45", ["", "45"], 45.0),  # structured numeric without a comparator
        ("SN", "=^45", ["=", "45"], 45.0),
    ],
)
def test_numbers_are_read(value_type, text, components, expected):
    assert read_number(value_type, text, components).value == expected


@pytest.mark.parametrize(
    ("value_type", "text", "components", "reason"),
    [
        ("NM", "<5", ["<5"], "censored value <5"),
        ("NM", "> 1000", ["> 1000"], "censored value >1000"),
        ("SN", "<^5", ["<", "5"], "censored value <5"),
        ("SN", "^1^-^5", ["", "1", "-", "5"], "a structured range or ratio"),
        ("NM", "abc", ["abc"], "'abc' is not a number"),
        ("NM", "1,5", ["1,5"], "'1,5' is not a number"),
    ],
)
def test_what_is_not_a_count_says_why(value_type, text, components, reason):
    number = read_number(value_type, text, components)
    assert number.value is None
    assert reason in number.problem


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("150-400", 150.0, 400.0),  # nHapi PLTC
        ("5.0-16.0", 5.0, 16.0),  # nHapi ORF WBC
        ("4.3 to 6.2", 4.3, 6.2),  # NIST LRI RBC
        ("150000 to 350000", 150000.0, 350000.0),
        ("0 to 0.3", 0.0, 0.3),
        ("150 - 450", 150.0, 450.0),
        ("<5", None, 5.0),
        (">3.5", 3.5, None),
        ("", None, None),
    ],
)
def test_reference_ranges_are_read(text, low, high):
    span = read_range(text)
    assert (span.low, span.high, span.problem) == (low, high, "")


def test_an_inverted_range_is_read_as_sent_for_the_engine_to_set_aside():
    # clinical-rules §2 v2: a range whose low is not below its high is set aside with a note by the engine
    # (on every path), never silently dropped by one reader
    span = read_range("400-150")
    assert (span.low, span.high, span.problem) == (400.0, 150.0, "")


@pytest.mark.parametrize("text", ["normal", "150-", "see comment"])
def test_a_range_not_understood_says_so(text):
    span = read_range(text)
    assert (span.low, span.high) == (None, None)
    assert repr(text) in span.problem


@pytest.mark.parametrize(
    ("text", "iso", "note"),
    [
        ("20110103143428-0800", "2011-01-03T14:34:28-08:00", ""),  # NIST LRI OBR-7
        ("20141006053500+0700", "2014-10-06T05:35:00+07:00", ""),  # LAB-ORU-1 SPM-17
        ("200509210520", "2005-09-21T05:20:00+00:00", "no UTC offset"),  # nHapi OBR-7
        ("20050921", "2005-09-21T00:00:00+00:00", "date only"),
        ("20050921052033.25+0100", "2005-09-21T05:20:33.250000+01:00", ""),
    ],
)
def test_times_become_iso_8601_with_an_offset(text, iso, note):
    moment = read_time(text, UTC, "UTC")
    assert moment.iso == iso
    assert note in moment.note if note else moment.note == ""


def test_a_time_without_offset_is_read_in_the_configured_zone():
    moment = read_time("200509210520", ZoneInfo("Europe/Berlin"), "Europe/Berlin")
    assert moment.iso == "2005-09-21T05:20:00+02:00"  # CEST in September
    assert "Europe/Berlin" in moment.note


@pytest.mark.parametrize(
    "text",
    ["2005", "200509", "2005-09-21", "20051341", "20261120083000+2500", "20261120083000-2400", "20261120083000+0175"],
)
def test_a_time_without_a_day_or_invalid_is_not_used(text):
    assert read_time(text, UTC, "UTC").iso is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("19551005", "1955-10-05"), ("196106150000", "1961-06-15"), ("1961", None), ("19610231", None)],
)
def test_birth_dates(text, expected):
    assert read_birth_date(text)[0] == expected


@pytest.mark.parametrize(
    ("code", "sex", "noted"),
    [
        ("F", "female", False),
        ("M", "male", False),
        ("m", "male", False),
        ("U", "unknown", False),
        ("O", "unknown", True),
        ("A", "unknown", True),
        ("Q", "unknown", True),
        ("", None, False),
    ],
)
def test_sex_codes_of_hl7_table_0001(code, sex, noted):
    read, note = read_sex(code)
    assert read == sex
    assert bool(note) is noted
