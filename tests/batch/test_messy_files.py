"""Acceptance tests of the CSV batch: messy real-world files, row by row.

The files and the expected answer for every row are in tests/batch/messy_files.py, derived by hand
from clinical-rules.md; these tests only run the batch and compare. Every row is accounted for:
rows out = rows in, in input order, each with its input line (header = line 1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labservice.batch import (
    BatchFileError,
    BatchOptions,
    MappingError,
    load_mapping_file,
    load_mapping_text,
    run_batch,
)
from tests.batch import messy_files as mf
from tests.batch.messy_files import GRADED, MessyFile, Row

#: After the values used: the summary line, the codes, the same findings in words, then the other decisions.
FIXED_DECISIONS = (
    "summary",
    "findings",
    "findings_text",
    "urgency",
    "not_assessed",
    "aplastic_anemia",
    "skin_attribution",
)
FIXED_TRAILING = ("notes", "error")
URGENCIES = {"routine", "soon", "urgent", "immediate"}


@dataclass
class Result:
    summary: dict[str, Any]
    header: list[str]
    rows: list[dict[str, str]]
    json_rows: list[dict[str, Any]]
    csv_text: str
    bom: bool  # the CSV began with a UTF-8 byte order mark (taken off before it was read)


def run(messy: MessyFile, tmp_path: Path, options: BatchOptions | None = None, **overrides: Any) -> Result:
    """Write the file, run the batch with CSV and JSON output, read both back."""
    path = messy.write(tmp_path)
    if options is None:
        options = BatchOptions(**{**messy.options, **overrides})
    csv_out, json_out = io.StringIO(), io.StringIO()
    with path.open("rb") as handle:
        summary = run_batch(handle, csv_out=csv_out, json_out=json_out, options=options)
    text = csv_out.getvalue()
    bom = text.startswith("\ufeff")
    # The output is written in the input's dialect: read it with the delimiter the summary reports.
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=summary.delimiter)
    rows = list(reader)
    return Result(summary.to_dict(), list(reader.fieldnames or []), rows, json.loads(json_out.getvalue()), text, bom)


def codes(cell: str) -> set[str]:
    return {code for code in cell.split(";") if code}


class Problems(list[str]):
    """Every disagreement of one file, reported together rather than stopping at the first."""

    def expect(self, condition: object, message: str) -> None:
        if not condition:
            self.append(message)


def check(messy: MessyFile, result: Result) -> None:
    """Every expectation of the file: rows, order, lines, ids, decisions, errors; then the summary."""
    assert len(result.rows) == len(messy.rows), f"{messy.name}: rows out {len(result.rows)} != {len(messy.rows)}"
    assert len(result.json_rows) == len(messy.rows), f"{messy.name}: JSON rows"
    problems = Problems()
    for expected, got, as_json in zip(messy.rows, result.rows, result.json_rows, strict=True):
        check_row(problems, expected, got, as_json)
    check_summary(problems, messy, result)
    assert not problems, f"{messy.name}:\n" + "\n".join(problems)


def check_row(problems: Problems, expected: Row, got: dict[str, str], as_json: dict[str, Any]) -> None:
    at = f"line {expected.line}"
    expect = problems.expect
    expect(got["line"] == str(expected.line), f"{at}: CSV line is {got['line']!r}")
    expect(str(as_json.get("line")) == str(expected.line), f"{at}: JSON line is {as_json.get('line')!r}")
    for header, text in expected.ids.items():
        expect(got.get(header) == text, f"{at}: id column {header!r} is {got.get(header)!r}, expected {text!r}")
    if expected.is_error:
        error = got["error"]
        expect(error, f"{at}: expected an error row, got urgency {got['urgency']!r}")
        for part in expected.error_has:
            expect(part in error, f"{at}: error {error!r} should contain {part!r}")
        expect(re.search(rf"\bline {expected.line}\b", error), f"{at}: error {error!r} should name its line")
        expect(got["urgency"] == "" and got["findings"] == "", f"{at}: an error row has no decisions")
        expect(got["summary"] == "Not interpreted: see the error column.", f"{at}: summary {got['summary']!r}")
        expect(as_json.get("error"), f"{at}: JSON error missing")
        return
    expect(got["error"] == "", f"{at}: unexpected error {got['error']!r}")
    expect(got["urgency"] == expected.urgency, f"{at}: urgency {got['urgency']!r}, expected {expected.urgency!r}")
    expect(as_json.get("urgency") == expected.urgency, f"{at}: JSON urgency {as_json.get('urgency')!r}")
    found = codes(got["findings"])
    expect(isinstance(as_json.get("findings"), list), f"{at}: JSON findings is not a list")
    expect(set(as_json.get("findings") or []) == found, f"{at}: JSON and CSV findings differ")
    if expected.exact:
        expect(found == set(expected.findings), f"{at}: findings {sorted(found)}, expected {sorted(expected.findings)}")
    else:
        expect(set(expected.findings) <= found, f"{at}: findings {sorted(found)} lack {sorted(expected.findings)}")
        expect(not found & expected.absent, f"{at}: findings should not contain {sorted(found & expected.absent)}")
    for analyte, (flag, grade) in expected.flags.items():
        cell = got.get(f"{analyte}_flag")
        expect(cell == flag, f"{at}: {analyte}_flag {cell!r}, expected {flag!r}")
        if analyte in GRADED:
            want = "" if grade is None else str(grade)
            cell = got.get(f"{analyte}_ctcae_grade")
            expect(cell == want, f"{at}: {analyte}_ctcae_grade {cell!r}, expected {want!r}")
    if expected.aplastic is not None:
        expect(
            got["aplastic_anemia"] == expected.aplastic,
            f"{at}: aplastic_anemia {got['aplastic_anemia']!r}, expected {expected.aplastic!r}",
        )
    if expected.flags.get("platelets", ("",))[0]:
        # contract: "none" = no non-blanching lesion reported (a CSV row reports none).
        expect(got["skin_attribution"] == "none", f"{at}: skin_attribution {got['skin_attribution']!r}")
    for part in expected.notes_has:
        expect(part in got["notes"], f"{at}: notes {got['notes']!r} should contain {part!r}")
    for part in expected.not_assessed_has:
        expect(part in got["not_assessed"], f"{at}: not_assessed {got['not_assessed']!r} should contain {part!r}")
    for header, text in expected.values.items():
        expect(got.get(header) == text, f"{at}: value {header!r} is {got.get(header)!r}, expected {text!r}")
    if expected.summary is not None:
        expect(got["summary"] == expected.summary, f"{at}: summary {got['summary']!r}, expected {expected.summary!r}")
        expect(as_json.get("summary") == expected.summary, f"{at}: JSON summary {as_json.get('summary')!r}")
    if expected.words is not None:
        words = [w for w in got["findings_text"].split("; ") if w]
        expect(set(words) == set(expected.words), f"{at}: findings_text {words}, expected {sorted(expected.words)}")
        expect(len(words) == len(found), f"{at}: {len(words)} findings in words for {len(found)} codes")
        expect(as_json.get("findings_text") == words, f"{at}: JSON findings_text {as_json.get('findings_text')}")


def check_summary(problems: Problems, messy: MessyFile, result: Result) -> None:
    summary = result.summary
    n_errors = sum(1 for row in messy.rows if row.is_error)
    rows_in = messy.rows_in if messy.rows_in is not None else len(messy.rows)
    urgencies = Counter(row.urgency for row in messy.rows if not row.is_error)
    expected: dict[str, Any] = {
        "shape": messy.shape,
        "rows_out": len(messy.rows),
        "rows_in": rows_in,
        "interpreted": len(messy.rows) - n_errors,
        "rejected": n_errors,
        "blank_lines": messy.blank_lines,
        "duplicates": messy.duplicates,
        "content_sha256": hashlib.sha256(messy.data).hexdigest(),
    }
    if messy.ignored_results is not None:
        expected["ignored_results"] = messy.ignored_results
    for key, value in expected.items():
        problems.expect(summary.get(key) == value, f"summary {key} is {summary.get(key)!r}, expected {value!r}")
    by_urgency = {k: v for k, v in summary["by_urgency"].items() if v}
    problems.expect(by_urgency == dict(urgencies), f"summary by_urgency {by_urgency}, expected {dict(urgencies)}")
    if all(row.exact for row in messy.rows):
        want = dict(Counter(code for row in messy.rows if not row.is_error for code in row.findings))
        by_finding = {k: v for k, v in summary["by_finding"].items() if v}
        problems.expect(by_finding == want, f"summary by_finding {by_finding}, expected {want}")
    problems.expect(summary.get("ruleset_version"), "summary ruleset_version empty")
    for header in messy.columns_ignored:
        problems.expect(header in summary["columns_ignored"], f"{header!r} not in summary columns_ignored")
    for header in messy.columns_used:
        problems.expect(header in summary["columns_used"], f"{header!r} not in summary columns_used")


# ---------------------------------------------------------------------------------------------- cases


@pytest.mark.parametrize("variant", sorted(mf.HEADER_VARIANTS))
def test_common_header_names_and_abbreviations(variant: str, tmp_path: Path) -> None:
    """PLT/Platelets/Platelet Count, HGB/Hb/Hgb, NEUT#/ANC/NEUTn, LYMPH#/LYMn, RETIC#/RETIC%, Sex/Gender, Age."""
    messy = mf.header_names(variant)
    check(messy, run(messy, tmp_path))


def test_units_in_the_header(tmp_path: Path) -> None:
    """`PLT (K/uL)`, `Hb [g/L]`, `"WBC, 10^9/L"`, `NEUT# (/uL)`, `HCT (L/L)` are converted (§1)."""
    messy = mf.header_units()
    check(messy, run(messy, tmp_path))


@pytest.mark.parametrize("shape", ["long", "auto"])
@pytest.mark.parametrize("chunk_rows", [None, 2], ids=["one_chunk", "chunks_of_2"])
def test_long_shape_with_a_unit_column(shape: str, chunk_rows: int | None, tmp_path: Path) -> None:
    """Results grouped into CBCs by id and time, in order of first appearance, even across chunks."""
    messy = mf.long_with_units()
    overrides: dict[str, Any] = {"shape": shape}
    if chunk_rows:
        overrides["chunk_rows"] = chunk_rows
    check(messy, run(messy, tmp_path, **overrides))


def test_units_option(tmp_path: Path) -> None:
    """The mapping's `units` states the unit of header-less columns (/uL, g/L)."""
    messy = mf.units_option()
    check(messy, run(messy, tmp_path))


@pytest.mark.parametrize("explicit", [False, True], ids=["detected", "stated"])
def test_semicolon_delimiter_with_decimal_commas(explicit: bool, tmp_path: Path) -> None:
    """Read with `;` and decimal commas, and written back the same way (issue 14 item 5): a spreadsheet in a
    decimal-comma locale opens the result as it opened the input."""
    messy = mf.semicolon_decimal_comma(explicit)
    result = run(messy, tmp_path)
    check(messy, result)
    first_line = result.csv_text.split("\n", 1)[0]
    assert first_line.split(";") == result.header and "," not in first_line
    assert not result.bom
    assert result.json_rows[0]["values"]["wbc"] == 2.1  # JSON numbers stay JSON numbers


def test_utf8_byte_order_mark(tmp_path: Path) -> None:
    messy = mf.utf8_bom()
    result = run(messy, tmp_path)
    check(messy, result)
    assert "platelets_flag" in result.header
    assert not any("\ufeff" in name for name in result.header)
    # Issue 14 item 5: a file that came with a byte order mark goes back with one (Excel then reads UTF-8).
    assert result.bom and result.summary["bom"] is True
    assert result.csv_text.count("\ufeff") == 1


def test_crlf_line_ends(tmp_path: Path) -> None:
    messy = mf.crlf()
    result = run(messy, tmp_path)
    check(messy, result)
    assert not result.bom and result.summary["bom"] is False  # no byte order mark in, none out


def test_quoted_fields_with_delimiter_newline_and_quotes(tmp_path: Path) -> None:
    """`"Q,2"` stays one id; the comment over two physical lines shifts the next row to line 5."""
    messy = mf.quoted_fields()
    result = run(messy, tmp_path)
    check(messy, result)
    assert "Comment" not in result.header  # not an id column: not copied


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    messy = mf.blank_lines()
    check(messy, run(messy, tmp_path))


def test_extra_columns_are_ignored_and_listed(tmp_path: Path) -> None:
    messy = mf.extra_columns()
    result = run(messy, tmp_path)
    check(messy, result)
    for header in ("Ward", "Doctor", "MPV", "Comment"):
        assert header not in result.header
        assert header not in result.summary["columns_used"]


def test_explicit_column_mapping_from_json_text(tmp_path: Path) -> None:
    messy = mf.explicit_mapping()
    check(messy, run(messy, tmp_path, options=load_mapping_text(messy.mapping_json())))


def test_explicit_column_mapping_from_a_file(tmp_path: Path) -> None:
    messy = mf.explicit_mapping()
    mapping = tmp_path / "mapping.json"
    mapping.write_text(messy.mapping_json(), encoding="utf-8")
    check(messy, run(messy, tmp_path, options=load_mapping_file(mapping)))


@pytest.mark.parametrize("stated", [True, False], ids=["stated", "detected"])
def test_windows_1252_file(stated: bool, tmp_path: Path) -> None:
    """Options: encoding None means UTF-8, else Windows-1252, reported in the summary."""
    messy = mf.explicit_mapping_windows_1252()
    assert b"H\xe4moglobin" in messy.data
    options = load_mapping_text(messy.mapping_json())
    if stated:
        options.encoding = "windows-1252"
    result = run(messy, tmp_path, options=options)
    check(messy, result)
    assert result.summary["encoding"].lower().replace("-", "") in ("cp1252", "windows1252")


def test_unusual_headers_without_a_mapping_are_a_file_error(tmp_path: Path) -> None:
    """Without the mapping no column holds an analyte: the file is unusable, not silently empty."""
    path = mf.explicit_mapping().write(tmp_path)
    with path.open("rb") as handle, pytest.raises(BatchFileError):
        run_batch(handle, csv_out=io.StringIO(), json_out=None, options=BatchOptions())


def test_mapping_with_an_unknown_key_is_refused() -> None:
    with pytest.raises(MappingError, match="colums"):
        load_mapping_text('{"colums": {"Thrombozyten": "platelets"}}')


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_a_mapping_nested_thousands_deep_is_refused(text: str) -> None:
    """Found by the hostile corpus: json.loads' RecursionError escaped (a 500 from POST /api/v1/batches)."""
    with pytest.raises(MappingError, match="nested too deeply"):
        load_mapping_text(text)


# ------------------------------------------------------------------------------------------ bad rows


def test_bad_rows_keep_their_place(tmp_path: Path) -> None:
    """abc, UNABLE TO REPORT, a surplus field, 210000 x10^9/L (hint /uL), `<5` (censored), `>100`."""
    messy = mf.bad_rows()
    result = run(messy, tmp_path)
    check(messy, result)
    censored = result.rows[6]
    assert "censor" in censored["notes"].lower() or "<5" in censored["notes"]
    for row in result.rows:
        if row["error"]:
            assert all(row[column] == "" for column in result.header if column.endswith(("_flag", "_ctcae_grade")))
            assert row["platelets (10*9/L)"] == ""  # nothing was used


def test_rejected_rows_are_listed_in_line_order(tmp_path: Path) -> None:
    """The summary quotes the rejected rows as the file orders them: a line with too many fields (the reader's)
    between two rows with a bad value (the parser's) is not put after them."""
    result = run(mf.bad_rows(), tmp_path)
    quoted = [int(re.match(r"line (\d+)", text).group(1)) for text in result.summary["first_errors"]]  # type: ignore[union-attr]
    assert quoted == [3, 4, 5, 6, 9, 10]


@pytest.mark.parametrize("name", sorted(mf.UNUSABLE_FILES))
def test_unusable_file_is_a_batch_file_error(name: str) -> None:
    """No header, no analyte column, or an unknown unit in a header -> BatchFileError (exit 2 / 422)."""
    with pytest.raises(BatchFileError) as caught:
        run_batch(
            io.BytesIO(mf.UNUSABLE_FILES[name]), csv_out=io.StringIO(), json_out=io.StringIO(), options=BatchOptions()
        )
    if name == "unknown_header_unit":
        # §1: "A unit the service does not know is an error that names the analyte and the unit".
        message = str(caught.value)
        assert "furlongs" in message
        assert "PLT" in message or "platelets" in message


def test_formula_injection_in_ids(tmp_path: Path) -> None:
    """Text ids starting with = + - @ are written with a leading quote; numbers (-5, +1) are not."""
    messy = mf.formula_injection()
    result = run(messy, tmp_path)
    check(messy, result)


def test_no_output_cell_starts_a_formula(tmp_path: Path) -> None:
    """Whatever column it is in, a text cell that starts with = + - @ must be neutralised."""
    result = run(mf.formula_injection(), tmp_path)
    for row in result.rows:
        for column, cell in row.items():
            if cell[:1] in ("=", "+", "-", "@"):
                try:
                    float(cell)
                except ValueError:
                    pytest.fail(f"line {row['line']}, column {column}: {cell!r} would run as a formula")


@pytest.mark.parametrize("chunk_rows", [None, 2], ids=["one_chunk", "chunks_of_2"])
def test_duplicate_id_and_collection_time(chunk_rows: int | None, tmp_path: Path) -> None:
    messy = mf.duplicate_ids()
    overrides = {"chunk_rows": chunk_rows} if chunk_rows else {}
    result = run(messy, tmp_path, **overrides)
    check(messy, result)
    for row in result.rows:
        if row["line"] != "4":
            assert "duplicate" not in row["notes"].lower(), row


# ------------------------------------------------------------------------------------ output layout


def test_output_columns(tmp_path: Path) -> None:
    """Ids under their original headers, the line, the values used (canonical units in the header), the summary
    line, the findings as codes and words, the other decisions, flags and grades, notes, error."""
    messy = mf.header_names("abbreviations")
    result = run(messy, tmp_path)
    header = result.header
    analytes = (
        "platelets",
        "wbc",
        "neutrophils",
        "lymphocytes",
        "hemoglobin",
        "hematocrit",
        "rbc",
        "mcv",
        "reticulocytes",
    )  # the engine's order (reticulocytes: derived from RETIC% x RBC, §1)
    # clinical-rules §1: canonical units 10*9/L (counts), g/dL, %, 10*12/L, fL.
    units = {
        "platelets": "10*9/L",
        "wbc": "10*9/L",
        "neutrophils": "10*9/L",
        "lymphocytes": "10*9/L",
        "hemoglobin": "g/dL",
        "hematocrit": "%",
        "rbc": "10*12/L",
        "mcv": "fL",
        "reticulocytes": "10*9/L",
    }
    values = [f"{a} ({units[a]})" for a in analytes]
    assert header[: 2 + len(values) + len(FIXED_DECISIONS)] == ["Sample ID", "line", *values, *FIXED_DECISIONS]
    assert header[-2:] == list(FIXED_TRAILING)
    expected_flags = {f"{a}_flag" for a in analytes} | {f"{a}_ctcae_grade" for a in GRADED}
    assert set(header[2 + len(values) + len(FIXED_DECISIONS) : -2]) == expected_flags
    for row in result.rows:
        assert row["urgency"] in URGENCIES


def test_json_only_and_csv_only_give_the_same_summary(tmp_path: Path) -> None:
    messy = mf.bad_rows()
    path = messy.write(tmp_path)
    with path.open("rb") as handle:
        only_json = run_batch(handle, csv_out=None, json_out=io.StringIO(), options=BatchOptions()).to_dict()
    with path.open("rb") as handle:
        only_csv = run_batch(handle, csv_out=io.StringIO(), json_out=None, options=BatchOptions()).to_dict()
    for key in ("rows_in", "rows_out", "interpreted", "rejected", "by_urgency", "by_finding", "content_sha256"):
        assert only_json[key] == only_csv[key], key


def test_a_long_file_line_with_too_many_fields_keeps_its_ids(tmp_path: Path) -> None:
    """Issue 14 item 5 in the long shape: the unreadable result line is an error row at its place with the id
    cells it shows. P1's CBC (platelets 45, line 2) is read without it: L, CTCAE 3 (§4)."""
    lines = [
        "Patient,Collected,Test,Result,Units",
        "P1,2026-01-05 08:00,PLT,45,10*3/uL",
        "P1,2026-01-05 08:00,HGB,13.5,g/dL,SEE NOTE",
        "P2,2026-01-05 09:00,PLT,250,10*9/L,SEE,NOTE",
    ]
    messy = mf.MessyFile("long_extra.csv", ("\n".join(lines) + "\n").encode(), {"shape": "long"}, [])
    result = run(messy, tmp_path)
    got = [(row["line"], row["Patient"], row["Collected"], row["error"]) for row in result.rows]
    assert got == [
        ("2", "P1", "2026-01-05 08:00", ""),
        ("3", "P1", "2026-01-05 08:00", "line 3: more fields than the header's 5"),
        ("4", "P2", "2026-01-05 09:00", "line 4: more fields than the header's 5"),
    ]
    assert result.rows[0]["platelets_flag"] == "L" and result.rows[0]["platelets_ctcae_grade"] == "3"
