"""Cell text for the CSV and JSON outputs, and the output columns (output.py).

Formula neutralisation follows OWASP "CSV injection": a text cell starting with = + - @, tab or
carriage return gets a leading apostrophe unless it is a number.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from labservice.batch.output import CsvFormat, OutputLayout, RowsOut, csv_text, json_text
from labservice.batch.output_dialect import OutputDialect, begins_with_bom, number_texts


def cells(*values) -> np.ndarray:
    return np.array(list(values), dtype=object)


NEUTRALISED = [
    ("=1+2", "'=1+2"),
    ('=HYPERLINK("http://x")', '"\'=HYPERLINK(""http://x"")"'),
    ("+SUM(A1)", "'+SUM(A1)"),
    ("-2+3", "'-2+3"),
    ("@cmd", "'@cmd"),
    ("\tx", '"\'\tx"'),  # neutralised, then quoted for the tab (a separator in a pasted TSV)
    ("\rx", '"\'\rx"'),  # neutralised, then quoted for the carriage return
    ("=a,b", '"\'=a,b"'),
    ("-", "'-"),
    ("+", "'+"),
    ("- 5", "'- 5"),
    ("--5", "'--5"),
    ("=5", "'=5"),
]


@pytest.mark.parametrize(("value", "expected"), NEUTRALISED)
def test_formula_cells_are_neutralised(value: str, expected: str) -> None:
    assert csv_text(cells(value)).tolist() == [expected]


@pytest.mark.parametrize(
    "value",
    ["-5", "+1.5e3", "-0.5", "-.5", "+7", "1e5", "-1E-3", "150", "S-1", "a=b", "a@b", "plain text", "'quoted", "é", ""],
)
def test_numbers_and_harmless_text_are_left_alone(value: str) -> None:
    assert csv_text(cells(value)).tolist() == [value]


QUOTED = [
    ("a,b", '"a,b"'),
    ('say "hi"', '"say ""hi"""'),
    ('"', '""""'),
    ("a\nb", '"a\nb"'),
    ("a\r\nb", '"a\r\nb"'),
    ("line 2, column PLT: 'abc' is not a number", "\"line 2, column PLT: 'abc' is not a number\""),
    # A separator of another locale or of a pasted TSV: unquoted, a spreadsheet splitting on it starts a new
    # cell with the formula (issue 10, item 11; OWASP CSV injection: quote cells that hold a separator).
    ('x;=HYPERLINK("http://evil")', '"x;=HYPERLINK(""http://evil"")"'),
    ("x;@SUM(A1)", '"x;@SUM(A1)"'),
    ("x\t=1+2", '"x\t=1+2"'),
    ("x\t-2+3", '"x\t-2+3"'),
    ("a;b", '"a;b"'),
]


@pytest.mark.parametrize(("value", "expected"), QUOTED)
def test_cells_are_quoted_where_needed(value: str, expected: str) -> None:
    assert csv_text(cells(value)).tolist() == [expected]


def test_missing_cells_are_empty() -> None:
    assert csv_text(cells(None, np.nan, "x")).tolist() == ["", "", "x"]
    assert csv_text(cells(None, None)).tolist() == ["", ""]
    assert csv_text(cells()).tolist() == []


def test_non_text_cells_are_written_as_text() -> None:
    assert csv_text(cells(None, np.nan, "x", 7, 1.5)).tolist() == ["", "", "x", "7", "1.5"]


def test_a_mixed_column_is_handled_cell_by_cell() -> None:
    values = ["S1", "=cmd", "a,b", None, "-5", "x\ny", "@", "ok", 'q"', "\tt"]
    expected = ["S1", "'=cmd", '"a,b"', "", "-5", '"x\ny"', "'@", "ok", '"q"""', '"\'\tt"']
    assert csv_text(cells(*values)).tolist() == expected


def test_csv_cells_read_back_as_the_neutralised_text() -> None:
    values = ["=1+2", "a,b", 'say "hi"', "x\ny", "-5", None, "\rz", "plain"]
    line = ",".join(csv_text(cells(*values)).tolist())
    back = next(csv.reader(io.StringIO(line, newline="")))
    assert back == ["'=1+2", "a,b", 'say "hi"', "x\ny", "-5", "", "'\rz", "plain"]


# "unit\x1fsep": found by hypothesis (tests/batch/test_rows_accounted_for.py); the unsafe-character scan joined the
# cells with \x1f and then removed every \x1f, so this one was written raw and the JSON file did not parse.
JSON = [
    "plain",
    'a"b',
    "back\\slash",
    "ctl\x01",
    "del\x7f",
    "tab\t",
    "new\nline",
    "cr\r",
    "é and 😀",
    "",
    "=1+2",
    "\u2028",
    "unit\x1fsep",
]


@pytest.mark.parametrize("value", JSON)
def test_json_text_round_trips(value: str) -> None:
    text = json_text(cells(value)).tolist()[0]
    assert json.loads(text) == value


def test_json_text_is_not_formula_neutralised_and_keeps_non_ascii() -> None:
    assert json_text(cells("=1+2", "é")).tolist() == ['"=1+2"', '"é"']


def test_json_missing_cells_are_null() -> None:
    assert json_text(cells(None, np.nan, "x")).tolist() == ["null", "null", '"x"']
    assert json_text(cells()).tolist() == []


def test_json_mixed_column() -> None:
    values = ["S1", None, 'q"', "ok", "a\nb"]
    out = json_text(cells(*values)).tolist()
    assert [json.loads(text) for text in out] == values


# -- layout ------------------------------------------------------------------------------------

DECISIONS = ["findings", "findings_text", "urgency", "not_assessed", "aplastic_anemia", "skin_attribution"]
UNITS = {"platelets": "10*9/L", "wbc": "10*9/L", "hemoglobin": "g/dL", "mcv": "fL"}  # clinical-rules §1


def test_column_order() -> None:
    """Issue 14 item 5: the ids, the line, the values used (canonical units in the header), the summary line beside
    the finding codes and their words, the other decisions, flags and grades, notes and error."""
    layout = OutputLayout(["Sample ID", "Collected"], ["platelets", "wbc", "hemoglobin", "mcv"], units=UNITS)
    assert layout.columns() == [
        "Sample ID",
        "Collected",
        "line",
        "platelets (10*9/L)",
        "wbc (10*9/L)",
        "hemoglobin (g/dL)",
        "mcv (fL)",
        "summary",
        *DECISIONS,
        "platelets_flag",
        "platelets_ctcae_grade",
        "wbc_flag",
        "wbc_ctcae_grade",
        "hemoglobin_flag",
        "hemoglobin_ctcae_grade",
        "mcv_flag",  # MCV has no CTCAE grade
        "notes",
        "error",
    ]


def test_graded_analytes_get_a_grade_column() -> None:
    layout = OutputLayout([], ["platelets", "wbc", "neutrophils", "lymphocytes", "hemoglobin", "rbc", "rdw"])
    assert [c for c in layout.flag_columns() if c.endswith("_ctcae_grade")] == [
        "platelets_ctcae_grade",
        "wbc_ctcae_grade",
        "neutrophils_ctcae_grade",
        "lymphocytes_ctcae_grade",
        "hemoglobin_ctcae_grade",
    ]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("line", "input_line"),
        ("summary", "input_summary"),
        ("findings_text", "input_findings_text"),
        ("platelets (10*9/L)", "input_platelets (10*9/L)"),
        ("urgency", "input_urgency"),
        ("findings", "input_findings"),
        ("notes", "input_notes"),
        ("error", "input_error"),
        ("platelets_flag", "input_platelets_flag"),
        ("platelets_ctcae_grade", "input_platelets_ctcae_grade"),
        ("mcv_flag", "mcv_flag"),  # MCV is not an output analyte here: no clash
        ("Line", "Line"),
        ("Sample ID", "Sample ID"),
    ],
)
def test_id_headers_clashing_with_output_names_are_renamed(header: str, name: str) -> None:
    layout = OutputLayout([header], ["platelets"], units={"platelets": "10*9/L"})
    assert layout.id_names() == [name]
    assert len(set(layout.columns())) == len(layout.columns())


def test_csv_header_line_is_neutralised_and_quoted() -> None:
    layout = OutputLayout(["=cmd", "Sample, ID", "line"], ["platelets"])
    header = CsvFormat(layout).opening()
    assert header.endswith("\n")
    names = next(csv.reader(io.StringIO(header, newline="")))
    assert names[:4] == ["'=cmd", "Sample, ID", "input_line", "line"]


# -- the output's dialect (issue 14 item 5) ---------------------------------------------------------------


def _rows(values: list[float], summaries: list[str | None], errors: list[str | None]) -> RowsOut:
    n = len(values)
    decisions = pd.DataFrame(
        {
            "platelets_value": values,
            "summary": summaries,
            "findings": pd.Categorical(["thrombocytopenia;neutropenia"] * n),
            "platelets_flag": pd.Categorical(["L"] * n),
        }
    )
    return RowsOut(
        np.arange(2, 2 + n), [cells(*[f"S{i}" for i in range(n)])], decisions, cells(*([None] * n)), cells(*errors)
    )


def test_semicolon_and_decimal_comma_output() -> None:
    """A `;` file with decimal commas is written back with `;` and decimal commas; a cell holding the delimiter
    (or any separator) is quoted."""
    layout = OutputLayout(["Sample ID"], ["platelets"], units={"platelets": "10*9/L"})
    text = CsvFormat(layout, OutputDialect(";", ",")).rows(
        _rows([99.5, 45.0], ["Platelets 99,5 low; ok", None], [None, "line 3: 'x' is not a number"])
    )
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert rows[0][:4] == ["S0", "2", "99,5", "Platelets 99,5 low; ok"]
    assert rows[0][4] == "thrombocytopenia;neutropenia"
    assert rows[1][:4] == ["S1", "3", "45", "Not interpreted: see the error column."]
    assert '"thrombocytopenia;neutropenia"' in text  # quoted: it holds the delimiter


def test_a_pipe_delimited_output_quotes_cells_holding_a_pipe() -> None:
    assert csv_text(cells("a|b", "ab"), "|").tolist() == ['"a|b"', "ab"]
    assert csv_text(cells("a|b"), ",").tolist() == ["a|b"]


def test_byte_order_mark_opens_the_file_only_when_asked() -> None:
    layout = OutputLayout(["Sample ID"], ["platelets"], units={"platelets": "10*9/L"})
    assert CsvFormat(layout, OutputDialect(bom=True)).opening().startswith("\ufeffSample ID,line,platelets (10*9/L)")
    assert CsvFormat(layout, OutputDialect()).opening().startswith("Sample ID,line,")
    assert CsvFormat(layout, OutputDialect(delimiter="\t")).opening().startswith("Sample ID\tline\t")
    assert begins_with_bom(b"\xef\xbb\xbfPLT\n") and not begins_with_bom(b"PLT\n")


@pytest.mark.parametrize(
    ("value", "decimal", "text"),
    [
        (45.0, ".", "45"),
        (0.4, ".", "0.4"),
        (0.4, ",", "0,4"),
        (8.2, ",", "8,2"),
        (1500.0, ",", "1500"),
        (0.00001, ".", "0.00001"),  # never exponent notation
        (15.0000001, ".", "15.0000001"),  # the value used, exactly: not rounded for show
        (float("nan"), ".", ""),
    ],
)
def test_values_used_are_written_exactly(value: float, decimal: str, text: str) -> None:
    assert number_texts(np.array([value, value]), decimal) == [text, text]
