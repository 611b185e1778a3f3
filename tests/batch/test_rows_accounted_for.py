"""Property: whatever a file holds, every non-blank input line comes back once, in order, either
interpreted or with an error naming its line; nothing is lost, nothing is invented.

Files are generated with random dialects (comma or semicolon with decimal commas, CRLF, a BOM),
random chunk sizes, and rows that are good, non-numeric, censored, implausible, too long, too
short, quoted with embedded delimiters and line breaks, formula-like, blank, or empty but for an id.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from labservice.batch import BatchOptions, run_batch
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.slow  # fuzzing: generated CSV files through the batch runner

HEADER = ["Sample ID", "Sex", "Age", "PLT", "HGB", "WBC", "Comment"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class GeneratedFile:
    data: bytes
    record_lines: list[int] = field(default_factory=list)  # physical line of each non-blank record
    long_lines: set[int] = field(default_factory=set)  # records with too many fields
    chunk_rows: int = 1


def number_text(value: float, decimal: str) -> str:
    text = f"{value:g}"
    return text.replace(".", ",") if decimal == "," else text


cell_kinds = st.sampled_from(["good", "good", "good", "empty", "junk", "censored", "implausible", "formula"])


@st.composite
def cells(draw, decimal: str) -> str:
    kind = draw(cell_kinds)
    if kind == "good":
        return number_text(draw(st.floats(min_value=0.1, max_value=600, allow_nan=False)), decimal)
    if kind == "empty":
        return ""
    if kind == "junk":
        return draw(st.sampled_from(["abc", "UNABLE TO REPORT", "n.d.", "1..2", "--5"]))
    if kind == "censored":
        return draw(st.sampled_from(["<5", ">1000", "<0" + decimal + "5", "< 20"]))
    if kind == "implausible":
        return draw(st.sampled_from(["210000", "99999"]))
    return draw(st.sampled_from(["=1+1", "@SUM(A1)", "+HYPERLINK(x)"]))


@st.composite
def messy_files(draw) -> GeneratedFile:
    semicolon = draw(st.booleans())
    delimiter, decimal = (";", ",") if semicolon else (",", ".")
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(HEADER)
    generated = GeneratedFile(b"")
    line = 2
    for index in range(draw(st.integers(min_value=0, max_value=40))):
        shape = draw(st.sampled_from(["row", "row", "row", "row", "blank", "long", "short", "id_only"]))
        if shape == "blank":
            out.write(newline)
            line += 1
            continue
        comment = draw(st.sampled_from(["", "ok", f"two{delimiter} parts", "line\nbreak", 'say "hi"', "=cmd()"]))
        row = [f"S{index}", draw(st.sampled_from(["M", "F", "", "X", "Q"])), draw(st.sampled_from(["40", "", "7"]))]
        row += [draw(cells(decimal)) for _ in range(3)] + [comment]
        if shape == "long":
            extra = draw(st.integers(min_value=1, max_value=3))  # pandas treats +1 and +2 or more apart
            if extra > 1 and "\n" in comment:
                row[-1] = comment = "no break"  # the reader's documented limit (reader.py, skipped lines)
            row += ["extra"] * extra
            generated.long_lines.add(line)
        elif shape == "short":
            row = row[:4]
            comment = ""
        elif shape == "id_only":
            row = [f"S{index}", "", "", "", "", "", ""]
            comment = ""
        writer.writerow(row)
        generated.record_lines.append(line)
        line += 1 + comment.count("\n")
    text = out.getvalue()
    bom = "\ufeff" if draw(st.booleans()) else ""
    generated.data = (bom + text).encode("utf-8")
    generated.chunk_rows = draw(st.integers(min_value=1, max_value=50))
    return generated


def csv_rows(text: str, delimiter: str) -> list[dict[str, str]]:
    """The output's rows: it is written in the input's dialect (its delimiter; a BOM kept)."""
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), delimiter=delimiter))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_files())
def test_every_line_comes_back_once_in_order(generated: GeneratedFile):
    csv_out, json_out = io.StringIO(), io.StringIO()
    summary = run_batch(
        io.BytesIO(generated.data),
        csv_out=csv_out,
        json_out=json_out,
        options=BatchOptions(chunk_rows=generated.chunk_rows),
    )
    rows = csv_rows(csv_out.getvalue(), summary.delimiter)
    as_json = json.loads(json_out.getvalue())

    assert [int(r["line"]) for r in rows] == generated.record_lines
    assert [r["line"] for r in as_json] == generated.record_lines
    assert summary.rows_in == summary.rows_out == len(generated.record_lines)
    assert summary.interpreted + summary.rejected == summary.rows_out
    assert sum(1 for r in rows if r["error"]) == summary.rejected
    for row in rows:
        # Exactly one of: interpreted (an urgency) or rejected (an error naming its own line).
        assert bool(row["urgency"]) != bool(row["error"]), row
        if row["error"]:
            assert row["error"].startswith(f"line {row['line']}"), row
        if int(row["line"]) in generated.long_lines:
            assert "more fields than the header's 7" in row["error"], row
        for value in row.values():
            if value.startswith(FORMULA_START):
                float(value)  # only numbers may start like a formula


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["P1", "P2", "", "P3"]),
            st.sampled_from(["t1", "t2"]),
            st.sampled_from(["PLT", "HGB", "777-3", "GLU", "WBC"]),
            st.sampled_from(["45", "13,5", "abc", "<5", ""]),
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_long_files_account_for_every_result(results, chunk_rows):
    lines = ["patient;time;test;result"] + [";".join(r) for r in results]
    data = ("\n".join(lines) + "\n").encode()
    csv_out = io.StringIO()
    summary = run_batch(io.BytesIO(data), csv_out=csv_out, options=BatchOptions(chunk_rows=chunk_rows, decimal=","))
    rows = csv_rows(csv_out.getvalue(), summary.delimiter)
    mapped = [(i + 2, r) for i, r in enumerate(results) if r[2] != "GLU" and any(r)]
    groups: dict[tuple[str, str], int] = {}
    for line, (patient, time, _, _) in mapped:
        groups.setdefault((patient, time), line)
    assert summary.rows_in == sum(1 for r in results if any(r))
    assert summary.ignored_results == sum(1 for r in results if r[2] == "GLU")
    assert [int(r["line"]) for r in rows] == sorted(groups.values())
    assert summary.interpreted + summary.rejected == summary.rows_out == len(groups)
    for row in rows:
        assert bool(row["urgency"]) != bool(row["error"]), row


# --- generated files with any header alias, delimiter, quoting, encoding and garbage ------------

from labservice.batch import BatchFileError  # noqa: E402
from tests.security.strategies import CsvFile, csv_files, garbled_csv_bytes  # noqa: E402

READABLE = dict(encodings=("utf-8", "utf-8-sig", "cp1252"), delimiters=(",", ";", "\t", "|"))


def run_or_refuse(data: bytes, chunk_rows: int = 7) -> tuple[object, list[dict[str, str]], list[dict]] | None:
    """run_batch's summary, CSV rows and JSON rows; None when the file as a whole is refused (BatchFileError,
    which the HTTP endpoint answers 422 and the command line exit 2). Any other exception fails the test."""
    csv_out, json_out = io.StringIO(), io.StringIO()
    try:
        summary = run_batch(
            io.BytesIO(data), csv_out=csv_out, json_out=json_out, options=BatchOptions(chunk_rows=chunk_rows)
        )
    except BatchFileError as error:
        assert str(error)  # the refusal says why
        event("refused as a whole")
        return None
    event("read")
    rows = csv_rows(csv_out.getvalue(), summary.delimiter)
    as_json = json.loads(json_out.getvalue())
    assert summary.rows_out == len(rows) == len(as_json)
    assert summary.interpreted + summary.rejected == summary.rows_out
    assert sum(1 for row in rows if row["error"]) == summary.rejected
    for row in rows:
        assert bool(row["urgency"]) != bool(row["error"]), row
        for value in row.values():
            if value.startswith(FORMULA_START):
                float(value)  # only numbers may start like a formula
    lines = [int(row["line"]) for row in rows]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    return summary, rows, as_json


#: Found by hypothesis in CI: the header's second cell is a quoted line break, so the header is one record over two
#: lines and the file has no data record. The delimiter was picked on the first physical line only (where "," and
#: ";" both give two fields): "," won, and the header's second line came back as a row with an unclosed quote.
HEADER_WITH_A_QUOTED_LINE_BREAK = CsvFile(
    data=b'platelets, 10*9/L;"\n";neutrophils;patient_id;sample_id;collected_at;wbc\n',
    delimiter=";",
    encoding="utf-8",
    header=["platelets, 10*9/L", "\n", "neutrophils", "patient_id", "sample_id", "collected_at", "wbc"],
)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files(**READABLE), st.integers(min_value=1, max_value=30))
@example(HEADER_WITH_A_QUOTED_LINE_BREAK, 1)
def test_every_record_of_a_generated_file_comes_back_once(generated: CsvFile, chunk_rows: int):
    """Any header alias (with or without a unit), delimiter, quoting and encoding the reader detects, and
    cells of every kind: each data record is one output row at its own line, interpreted or rejected."""
    note(f"file: {generated.data!r}")
    outcome = run_or_refuse(generated.data, chunk_rows)
    if outcome is None:
        return
    summary, rows, _ = outcome
    assert summary.rows_in == generated.records, (summary.rows_in, generated.records)
    assert summary.blank_lines == generated.blank
    assert [int(row["line"]) for row in rows] == generated.record_lines
    for row in rows:
        if row["error"]:
            assert row["error"].startswith(f"line {row['line']}"), row


def test_a_header_holding_a_quoted_line_break_is_one_record_and_the_lines_after_it_keep_their_numbers():
    """The header record ends at the first line end outside quotes: here on line 2, so the records are lines 3, 4."""
    header = HEADER_WITH_A_QUOTED_LINE_BREAK.data
    summary = run_batch(io.BytesIO(header), csv_out=io.StringIO())
    assert (summary.delimiter, summary.rows_in, summary.rows_out, summary.first_errors) == (";", 0, 0, [])
    csv_out = io.StringIO()
    summary = run_batch(
        io.BytesIO(header + b"45;;2,5;P1;S1;2026-01-01;6\n45;;2,5;P2;S2;2026-01-01;6\n"), csv_out=csv_out
    )
    rows = csv_rows(csv_out.getvalue(), summary.delimiter)
    assert summary.delimiter == ";" and summary.rows_in == 2 and summary.first_errors == []
    assert [int(row["line"]) for row in rows] == [3, 4]
    assert [row["sample_id"] for row in rows] == ["S1", "S2"]


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(csv_files(), garbled_csv_bytes()))
def test_any_file_is_read_or_refused_as_a_whole_never_a_crash(data):
    """Undetectable delimiters, UTF-16, bytes replaced, files cut short, binary and gzip bytes, a header of
    thousands of columns: run_batch reads the file (every output row consistent) or refuses it with a reason."""
    data = data.data if isinstance(data, CsvFile) else data
    note(f"file: {data!r}")
    run_or_refuse(data)
