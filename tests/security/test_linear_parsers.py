"""Every parser on a request path is linear in its input: a megabyte of hostile text per cell
or field gets a correct answer or a clean 4xx problem, never minutes of backtracking.

A CSV header cell of 45,000 spaces between two words took 15 s per upload (the header's unit-part regular
expression, `^(.*?)\\s*(?:...)\\s*$`, tried every split), and two such uploads stopped both workers. The checks
below feed each parser about 1 MB of spaces, digits, unit-like characters, separators and long dates. Each is
guarded by `finishes_within` (tests/guards.py): a generous bound against quadratic blow-up, not a speed
assertion. The same file under a real gunicorn: tests/security/test_hostile_serving.py.
"""

from __future__ import annotations

import io
import logging
import re

import hl7
import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from labservice.adapters.csv_input.cells import parse_dates, parse_numbers
from labservice.adapters.csv_input.dialect import sniff
from labservice.adapters.csv_input.headers import resolve_header, split_header
from labservice.adapters.csv_input.options import BatchFileError, BatchOptions
from labservice.adapters.hl7v2.message import MAX_SEGMENT_SEPARATORS
from labservice.adapters.hl7v2.values import read_birth_date, read_number, read_range, read_time
from tests.adapters.hl7v2.samples import NHAPI_ORU, replace_field, text
from tests.guards import finishes_within
from tests.hypothesis_profiles import examples

MB = 1_000_000
ER7 = "x-application/hl7-v2+er7"
PROBLEM = "application/problem+json"


@pytest.fixture
def client(make_app) -> FlaskClient:
    return make_app(RATE_LIMIT="off", RATE_LIMIT_UPLOADS="off").test_client()


def upload(client: FlaskClient, data: bytes):
    with finishes_within():
        return client.post(
            "/api/v1/batches?store=false",
            data={"file": (io.BytesIO(data), "hostile.csv")},
            content_type="multipart/form-data",
        )


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == PROBLEM
    return response.get_json()


# --- CSV header: the unit part --------------------------------------------------------------------------------

#: The pattern split_header used before (kept here as the reference for what it must answer on short headers).
OLD_UNIT_PART = re.compile(r"^(?P<name>.*?)\s*(?:\((?P<p>[^()]*)\)|\[(?P<b>[^\[\]]*)\]|,\s*(?P<c>[^,]+))\s*$")


def old_split_header(header: str) -> tuple[str, str | None]:
    text = header.strip()
    match = OLD_UNIT_PART.match(text)
    if match and match.group("name"):
        unit = match.group("p") or match.group("b") or match.group("c")
        if unit is not None and unit.strip():
            return match.group("name").strip(), unit.strip()
    return text, None


@pytest.mark.slow  # Hypothesis-heavy: 400 headers under ci
@settings(max_examples=examples(400), deadline=None)
@given(st.text(alphabet=" \t\n(),[]%aP/1µ", max_size=14))
def test_split_header_answers_as_the_old_pattern_did_on_short_headers(header: str):
    assert split_header(header) == old_split_header(header)


NO_UNIT = None
HEADER_CELLS = [
    # (cell, the unit split_header finds: the name is then "PLT"; NO_UNIT: the cell is the name)
    ("PLT" + " " * MB + "x", NO_UNIT),  # the issue's shape: spaces between two words
    ("PLT" + " " * MB + "(K/uL)", "K/uL"),
    ("PLT" + " " * MB + "[", NO_UNIT),
    ("PLT" + " " * MB + ",", NO_UNIT),
    ("PLT," + " " * MB + "K/uL", "K/uL"),
    ("1" * MB, NO_UNIT),
    ("(" * MB, NO_UNIT),
    (")" * MB, NO_UNIT),
    ("PLT" + " (" * (MB // 2) + ")", NO_UNIT),  # the last "()" holds no unit
]


@pytest.mark.parametrize(("cell", "unit"), HEADER_CELLS, ids=range(len(HEADER_CELLS)))
def test_a_megabyte_header_cell_is_split_in_linear_time(cell: str, unit: str | None):
    with finishes_within():
        name, found = split_header(cell)
        field, _ = resolve_header(cell)
    assert (name, found) == (("PLT", unit) if unit else (name, None))
    assert field == ("platelets" if unit else None)


def test_repeated_unit_parts_split_at_the_last_one():
    with finishes_within():
        assert split_header("(K/uL)" * (MB // 6)) == ("(K/uL)" * (MB // 6 - 1), "K/uL")
        assert split_header("a," * (MB // 2) + "b") == ("a," * (MB // 2 - 1) + "a", "b")
        assert split_header("PLT" + " ," * (MB // 2) + " K/uL") == ("PLT" + " ," * (MB // 2 - 1), "K/uL")


def test_the_issues_header_of_45000_spaces_is_uploaded_and_the_column_ignored(client):
    cell = "note" + " " * 45_000 + "text"
    response = upload(client, f"sample_id,platelets,{cell}\nS1,45,x\n".encode())
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    summary = response.get_json()["summary"]
    assert summary["columns_used"] == {"sample_id": "sample_id", "platelets": "platelets"}
    assert summary["columns_ignored"] == [cell]
    assert summary["interpreted"] == 1


# --- CSV dialect and reader -------------------------------------------------------------------------------------


@pytest.mark.parametrize("filler", [" ", "1", ",", ";", "\t", "|", '"', "(K/uL)"])
def test_a_header_line_of_a_megabyte_is_refused_naming_the_limit(client, filler: str):
    line = ("PLT" + filler * (MB // len(filler))).encode()
    response = upload(client, line + b"\n1\n")
    body = problem(response, 422)
    assert "file" in body["errors"]


@pytest.mark.parametrize("filler", [" ", "1", "1.5 ", "(K/uL)", "[10^9/L]"])
def test_sniffing_a_long_quoted_header_cell_and_long_number_cells_is_linear(filler: str):
    cell = filler * (100_000 // len(filler))  # within the csv module's 128 KiB field limit
    sample = f'sample_id;"{cell}"\n' + "".join(f"S{i};{cell}\n" for i in range(2))
    with finishes_within():
        dialect = sniff(sample.encode()[: 256 * 1024], BatchOptions(), complete=False)
    assert dialect.delimiter == ";" and dialect.header == ["sample_id", cell.strip()]


def test_sniffing_a_megabyte_without_a_line_end_is_refused():
    with finishes_within(), pytest.raises(BatchFileError, match="longer than"):
        sniff(("PLT " + " " * MB).encode()[: 256 * 1024], BatchOptions(), complete=False)


CELLS = {
    "spaces": " " * MB,
    "digits": "1" * MB,
    "unit-like": "10^9/L(K/uL)[g/dL]" * (MB // 18),
    "long ISO date": "2026-01-01" + "T" * MB,
    "long day.month.year": "1.2.2026 " + "1" * MB,
    "long day/month/year": "01/02/2026" + " " * MB + "x",
    "censored": "<" + " " * MB + "5",
    "decimals": "1." + "0" * MB + "x",
}


@pytest.mark.parametrize("column", ["platelets", "collected_at", "birth_date", "sex", "age"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_a_megabyte_data_cell_is_a_row_error_or_a_value_in_linear_time(client, kind: str, column: str):
    header = ["sample_id", "platelets", "collected_at", "birth_date", "sex", "age"]
    values = {
        "sample_id": "S1",
        "platelets": "45",
        "collected_at": "2026-01-01T08:00:00Z",
        "birth_date": "1980-01-01",
        "sex": "F",
        "age": "40",
    }
    values[column] = CELLS[kind]
    data = (",".join(header) + "\n" + ",".join(values[h] for h in header) + "\nS2,45,,,F,40\n").encode()
    response = upload(client, data)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    summary = response.get_json()["summary"]
    assert summary["rows_out"] == 2 and summary["interpreted"] + summary["rejected"] == 2
    if summary["rejected"]:
        assert summary["first_errors"][0].startswith("line 2")


@pytest.mark.parametrize("column", ["item", "value", "unit"])
@pytest.mark.parametrize("kind", ["spaces", "digits", "unit-like", "censored"])
def test_a_megabyte_cell_of_the_long_shape_is_a_row_error_in_linear_time(client, kind: str, column: str):
    values = {"sample_id": "S1", "item": "PLT", "value": "45", "unit": "K/uL"}
    values[column] = CELLS[kind]
    data = ("sample_id,item,value,unit\n" + ",".join(values.values()) + "\nS2,PLT,45,K/uL\n").encode()
    response = upload(client, data)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    summary = response.get_json()["summary"]
    assert summary["interpreted"] >= 1  # S2 is read whatever S1 holds


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("line", ["S1" + "{d}" * MB, "S1{d}45" + "{d}x" * (MB // 2), "S1" + "{d}" * 100_000])
def test_a_first_data_line_of_a_megabyte_of_fields_is_read_in_linear_time(client, delimiter: str, line: str):
    """pandas' C parser made a column of every field of the first record: a first data line of a megabyte of
    commas took 30 s. The records after it are read as usual; a too long line with a value after the
    header's fields is reported."""
    d = delimiter
    data = f"sample_id{d}platelets\n{line.format(d=d)}\nS2{d}45\nS3{d}45{d}x{d}y\n".encode()
    response = upload(client, data)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    summary = response.get_json()["summary"]
    assert summary["rows_out"] == 3 and summary["interpreted"] == 1  # S2
    assert summary["first_errors"][0].startswith("line 2")
    assert summary["first_errors"][-1] == "line 4: more fields than the header's 2"
    if "x" in line:
        assert summary["first_errors"][0] == "line 2: more fields than the header's 2"


@pytest.mark.parametrize("kind", list(CELLS))
def test_number_and_date_columns_of_megabyte_cells_parse_in_linear_time(kind: str):
    column = pd.Series([CELLS[kind], "45", None], dtype=object)
    with finishes_within():
        numbers = parse_numbers(column)
        times, bad, _ambiguous = parse_dates(column, "DMY")
    assert numbers.values[1] == 45.0 and np.isnan(numbers.values[2])
    assert np.isnat(times[0]) and not bad[2]
    blank = kind == "spaces"
    assert bool(bad[0]) is not blank  # an unreadable date; only spaces are a missing one
    if kind == "censored":  # "< 5" with a megabyte of spaces: a bound, not a bad cell
        assert numbers.censored[0] == -1 and numbers.bound[0] == 5.0 and not numbers.bad[0]
    elif kind == "digits":  # a number beyond any float: infinite (judged implausible later) or bad
        assert numbers.bad[0] or np.isinf(numbers.values[0])
    else:
        assert bool(numbers.bad[0]) is not blank


# --- HL7 v2 -----------------------------------------------------------------------------------------------------


def post_hl7(client: FlaskClient, message: str):
    with finishes_within():
        return client.post("/api/v1/hl7v2/interpret?store=false", data=message.encode(), content_type=ER7)


FIELDS = {
    "spaces": " " * MB,
    "digits": "1" * MB,
    "range": "1-" * (MB // 2),
    "time": "2026" + "0" * MB,
    "unit-like": "10*3/uL" * (MB // 7),
    "escapes": "\\" * MB,
}


@pytest.mark.parametrize("where", [("OBX", 5), ("OBX", 6), ("OBX", 7), ("OBR", 7), ("PID", 7), ("PID", 3)])
@pytest.mark.parametrize("kind", list(FIELDS))
def test_a_megabyte_hl7_field_is_answered_in_linear_time(client, kind: str, where: tuple[str, int]):
    response = post_hl7(client, replace_field(text(NHAPI_ORU), (where[0], 1), where[1], FIELDS[kind]))
    assert response.status_code in (200, 413, 422), response.get_data(as_text=True)[:300]
    if response.status_code != 200:  # 413: a million escape characters are counted as separators
        assert response.mimetype == PROBLEM and response.get_json()["errors"]


@pytest.mark.parametrize("which", range(5))
def test_an_hl7_segment_of_a_million_separators_is_a_413_before_parsing(client, monkeypatch, which: int):
    """python-hl7 builds an object per component and each read joins a field again: 6-15 s for one field of a
    million `^`. The separators (this message's MSH-1 and MSH-2: `|^~\\$`) are counted on the text first."""
    parsed = spy_on_hl7_parse(monkeypatch)
    base = text(NHAPI_ORU)
    separator = base[3:8][which]
    message = replace_field(base, ("OBX", 1), 5, separator * MB)
    body = problem(post_hl7(client, message), 413)
    assert body["errors"] == {
        "OBX[1]": [f"at most {MAX_SEGMENT_SEPARATORS} field, component and repetition separators per segment"]
    }
    assert max(parsed, default=0) < 1000  # only the stand-in header of the ACK was parsed, never the message


def test_an_hl7_segment_at_the_separator_limit_is_read(client):
    message = replace_field(text(NHAPI_ORU), ("OBX", 1), 30, "^" * (MAX_SEGMENT_SEPARATORS - 40))
    assert post_hl7(client, message).status_code == 200


def spy_on_hl7_parse(monkeypatch) -> list[int]:
    """The length of every text python-hl7 parses from here on."""
    lengths: list[int] = []
    real = hl7.parse

    def parse(text, *args, **kwargs):
        lengths.append(len(text))
        return real(text, *args, **kwargs)

    monkeypatch.setattr(hl7, "parse", parse)
    return lengths


def test_25000_order_groups_are_a_413_counted_before_parsing(client, monkeypatch):
    """Issue 10, item 11: 25,000 OBR groups cost 15 s before their 413; the OBR segments are counted first."""
    parsed = spy_on_hl7_parse(monkeypatch)
    lines = text(NHAPI_ORU).split("\r")
    msh, pid = lines[0], next(line for line in lines if line.startswith("PID"))
    group = ["OBR|1", "OBX|1|NM|777-3^^LN||45|10*3/uL"]  # short, so 25,000 fit in the 2 MB body limit
    body = problem(post_hl7(client, "\r".join([msh, pid, *group * 25_000])), 413)
    assert body["errors"] == {"OBR": ["at most 2000 order groups per message"]}  # twice MAX_BATCH_ITEMS (1000)
    assert "25000 order groups" in body["detail"]
    assert max(parsed, default=0) < 1000


def test_the_cbc_limit_still_counts_cbcs_after_reading(make_app):
    client = make_app(MAX_BATCH_ITEMS=3).test_client()
    lines = text(NHAPI_ORU).split("\r")
    msh, pid = lines[0], next(line for line in lines if line.startswith("PID"))
    group = [
        "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120083000+0000",
        "OBX|1|NM|777-3^Platelets^LN||45|10*3/uL|150-410|L|||F",
    ]
    assert post_hl7(client, "\r".join([msh, pid, *group * 3])).status_code == 200
    assert post_hl7(client, "\r".join([msh, pid, *group * 4])).status_code == 413


@pytest.mark.parametrize("kind", list(FIELDS))
def test_hl7_value_readers_are_linear(kind: str):
    from datetime import UTC

    field = FIELDS[kind]
    with finishes_within():
        number = read_number("NM", field, [field])
        bounds = read_range(field)
        moment = read_time(field, UTC, "UTC")
        born, _ = read_birth_date(field)
    assert number.value is None or kind in ("digits", "time")  # a million digits: infinite, judged implausible later
    assert bounds.low is None and bounds.high is None and bool(bounds.problem) is (kind != "spaces")
    assert moment.iso is None and born is None


# --- units and dates in JSON and query strings ------------------------------------------------------------------


@pytest.mark.parametrize("unit", [" " * MB, "K/uL" * (MB // 4), "µ" * (MB // 8), "10^9/L " * (MB // 7)])
def test_a_megabyte_unit_is_a_422_naming_the_field(client, unit: str):
    with finishes_within():
        response = client.post("/api/v1/interpretations", json={"results": {"platelets": {"value": 45, "unit": unit}}})
    body = problem(response, 422)
    assert any(name.startswith("results.platelets") for name in body["errors"]), body


@pytest.mark.parametrize("moment", ["2026-01-01" + "0" * MB, "2026" + " " * MB, "+" * MB])
def test_a_megabyte_date_in_the_audit_query_is_a_422_naming_it(client, moment: str):
    with finishes_within():
        response = client.get("/api/v1/audit", query_string={"from": moment})
    body = problem(response, 422)
    assert "from" in body["errors"]


@pytest.mark.parametrize("moment", ["2026-01-01" + "0" * MB, "9" * MB])
def test_a_megabyte_date_filter_on_the_worklist_is_reported_and_ignored(client, moment: str):
    with finishes_within():
        response = client.get("/dashboard/", query_string={"from": moment})
    assert response.status_code == 200
    assert "is not a date (YYYY-MM-DD) and was ignored" in response.text


def test_empty_hl7_escape_sequences_log_nothing_that_quotes_the_field(client, caplog):
    """python-hl7 warned once per empty escape sequence (`\\\\`), quoting the whole field each time: a field of
    a million `\\` wrote half a million copies of itself to the log (a full disk, and patient data in logs)."""
    field = "MRN-SECRET-" + "\\\\" * 2_000 + "x" * 100_000
    caplog.set_level(logging.DEBUG)
    response = post_hl7(client, replace_field(text(NHAPI_ORU), ("OBX", 1), 7, field))  # the range, read
    assert response.status_code in (200, 422)
    assert not [record for record in caplog.records if "MRN-SECRET" in record.getMessage()]
    assert sum(len(record.getMessage()) for record in caplog.records) < 100_000
