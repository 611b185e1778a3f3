"""Encoding, delimiter and decimal mark read off the first bytes of a file (dialect.py)."""

from __future__ import annotations

import pytest

from labservice.adapters.csv_input.dialect import MAX_COLUMNS, SAMPLE_BYTES, sniff
from labservice.adapters.csv_input.options import BatchFileError, BatchOptions


def dialect(data: bytes, complete: bool = True, **options):
    return sniff(data, BatchOptions(**options), complete)


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [
        (b"Sample ID,PLT,WBC\nS1,150,6.2\n", ","),
        (b"Sample ID;PLT;WBC\nS1;150;6,2\n", ";"),
        (b"Sample ID\tPLT\tWBC\nS1\t150\t6.2\n", "\t"),
        (b"Sample ID|PLT|WBC\nS1|150|6.2\n", "|"),
        # the delimiter splitting the header into the most fields wins over a comma inside a name
        (b"Sample ID;Name, first;PLT\nS1;Ann;150\n", ";"),
        (b'"Sample ID","PLT (K/uL)","WBC"\n"S1","150","6.2"\n', ","),
    ],
)
def test_delimiter_is_sniffed(data: bytes, delimiter: str) -> None:
    found = dialect(data)
    assert found.delimiter == delimiter
    assert found.header[0] == "Sample ID"
    assert len(found.header) == 3


def test_single_column_file_defaults_to_comma() -> None:
    found = dialect(b"PLT\n150\n")
    assert found.delimiter == ","
    assert found.header == ["PLT"]


def test_header_cells_are_stripped() -> None:
    assert dialect(b" Sample ID , PLT \nS1,150\n").header == ["Sample ID", "PLT"]


@pytest.mark.parametrize(
    ("data", "decimal"),
    [
        (b"id;PLT;HGB\nS1;150;13,5\nS2;90;12,1\n", ","),
        (b"id;PLT;HGB\nS1;150;13.5\nS2;90;12.1\n", "."),
        (b"id\tPLT\tHGB\nS1\t150\t13,5\n", ","),
        (b"id|HGB\nS1|13,5\n", ","),
        (b"id;PLT;HGB\nS1;150;200\n", "."),  # no decimals at all: the point
        (b"id;HGB;WBC;MCV\nS1;13,5;6.2;88.1\n", "."),  # more points than commas
        (b"id;HGB;WBC;MCV\nS1;13,5;6,2;88.1\n", ","),  # more commas than points
        # a comma-delimited file always uses the point, whatever a quoted cell holds
        (b'id,HGB,WBC\nS1,"13,5","6,2"\n', "."),
    ],
)
def test_decimal_mark_is_detected(data: bytes, decimal: str) -> None:
    assert dialect(data).decimal == decimal


def test_stated_delimiter_and_decimal_win() -> None:
    found = dialect(b"id;PLT,x;HGB\nS1;150;13.5\n", delimiter=",", decimal=",")
    assert found.delimiter == ","
    assert found.decimal == ","
    assert found.header == ["id;PLT", "x;HGB"]


def test_utf8_bom_is_dropped_from_the_header() -> None:
    found = dialect(b"\xef\xbb\xbfPLT,WBC\n150,6\n")
    assert found.encoding == "utf-8-sig"
    assert found.header == ["PLT", "WBC"]


def test_plain_utf8() -> None:
    found = dialect("Hémoglobine,PLT\n13,150\n".encode())
    assert found.encoding == "utf-8-sig"  # the codec that also accepts a BOM
    assert found.header == ["Hémoglobine", "PLT"]


def test_windows_1252_fallback() -> None:
    found = dialect("Hémoglobine;Größe\n13;150\n".encode("cp1252"))
    assert found.encoding == "cp1252"
    assert found.header == ["Hémoglobine", "Größe"]


def test_multibyte_character_cut_at_the_end_of_a_partial_sample_is_still_utf8() -> None:
    data = b"Name,PLT\n" + "Zoë,150\n".encode() * 3
    cut = data[:-6]  # ends inside the two bytes of "ë"
    assert dialect(cut, complete=False).encoding == "utf-8-sig"


def test_stated_encoding_is_used() -> None:
    found = dialect("Größe,PLT\n1,150\n".encode("latin-1"), encoding="latin-1")
    assert found.encoding == "latin-1"
    assert found.header == ["Größe", "PLT"]


def test_unknown_stated_encoding_is_refused() -> None:
    with pytest.raises(BatchFileError, match="unknown encoding 'klingon'"):
        dialect(b"PLT\n1\n", encoding="klingon")


@pytest.mark.parametrize(
    ("data", "leading", "header_lines"),
    [
        (b"PLT,WBC\n150,6\n", 0, 1),
        (b"\nPLT,WBC\n150,6\n", 1, 2),
        (b"\n\n  \nPLT,WBC\n150,6\n", 3, 4),
        (b"\r\n\r\nPLT,WBC\r\n150,6\r\n", 2, 3),
        (b'"PLT\n(K/uL)",WBC\n150,6\n', 0, 2),  # a quoted header spanning two lines
        (b'\n"PLT\n(K/uL)",WBC\n150,6\n', 1, 3),
    ],
)
def test_leading_blank_lines_and_header_lines(data: bytes, leading: int, header_lines: int) -> None:
    found = dialect(data)
    assert found.leading_blank_lines == leading
    assert found.header_lines == header_lines
    assert found.header[1] == "WBC"


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n\n", b"  \r\n\t\n"])
def test_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(BatchFileError, match="empty"):
        dialect(data)


def test_header_of_delimiters_only_is_refused() -> None:
    with pytest.raises(BatchFileError, match="header line is empty"):
        dialect(b",,\n1,2,3\n")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("PLT,WBC\n150,6\n".encode("utf-16"), "UTF-16 text"),  # with its BOM (FF FE)
        ("PLT,WBC\n150,6\n".encode("utf-16-le"), "UTF-16 text"),  # no BOM: a NUL after every ASCII byte
        ("PLT,WBC\n150,6\n".encode("utf-16-be"), "UTF-16 text"),  # no BOM: a NUL before every ASCII byte
        (b"\xfe\xff\x00P\x00L\x00T", "UTF-16 text"),  # big-endian BOM
        ("Hämoglobin;Thrombozyten\n".encode("utf-16"), "UTF-16 text"),
        ("PLT,WBC\n150,6\n".encode("utf-32"), "UTF-32 text"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "Excel workbook"),  # a zip (xlsx) file
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ],
)
def test_utf16_and_binary_files_are_refused_saying_save_it_as_csv_utf8(data: bytes, says: str) -> None:
    """Issue 14 item 6: a UTF-16 file (Excel's "Unicode text") gets what to do, not only what is wrong."""
    with pytest.raises(BatchFileError, match="save it as CSV UTF-8") as refused:
        dialect(data)
    assert says in str(refused.value)


def test_a_text_file_with_one_nul_is_binary_not_utf16() -> None:
    with pytest.raises(BatchFileError, match=r"binary \(it holds NUL bytes\)"):
        dialect(b"PLT,HGB\n45\x00,12\n")


def test_windows_1252_header_units_are_read_and_the_encoding_is_said() -> None:
    """x10³/µL saved by a Windows spreadsheet: ³ is the byte B3 and µ B5 in Windows-1252 (not UTF-8)."""
    data = b"MRN;PLT (x10\xb3/\xb5L)\nP1;45\n"
    found = dialect(data)
    assert found.encoding == "cp1252"
    assert found.header == ["MRN", "PLT (x10³/µL)"]
    assert found.encoding_note and "read as Windows-1252" in found.encoding_note
    assert "byte 0xB3 at offset 12" in found.encoding_note


def test_bytes_windows_1252_leaves_undefined_are_said() -> None:
    """0x81 is one of the five bytes Windows-1252 does not define: read as U+FFFD, and the summary says so."""
    found = dialect(b"MRN,PLT\nP\x81,45\n")
    assert found.encoding == "cp1252"
    assert found.encoding_note and "neither UTF-8 nor Windows-1252 (byte 0x81 at offset 9" in found.encoding_note


def test_a_utf8_file_has_no_encoding_note() -> None:
    assert dialect("MRN,PLT (x10³/µL)\nP1,45\n".encode()).encoding_note is None


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [(b"id;PLT;HGB\r1;45;8\r", ";"), (b"id,PLT\r1,45\r2,50\r", ","), (b'"id"\t"PLT"\r"1"\t"45"\r', "\t")],
)
def test_lines_ending_in_cr_alone_are_read(data: bytes, delimiter: str) -> None:
    """Found by hypothesis (tests/batch/test_rows_accounted_for.py): the csv module raised 'new-line character seen
    in unquoted field' on a file whose lines end in CR alone (classic Mac OS exports)."""
    found = dialect(data)
    assert found.delimiter == delimiter
    assert found.header[:2] == ["id", "PLT"]
    assert found.header_lines == 1


# A CSV line of a million columns (the hostile corpus, tests/security/test_hostile_corpus.py): the csv module raised
# "field larger than field limit" while trying delimiters, a 500. A header must end within the sample and have at
# most MAX_COLUMNS columns.
def test_a_header_longer_than_the_sample_is_refused() -> None:
    with pytest.raises(BatchFileError, match=f"longer than {SAMPLE_BYTES} bytes"):
        dialect(b",".join([b"PLT"] * 1_000_000)[:SAMPLE_BYTES], complete=False)


def test_a_header_of_more_than_max_columns_is_refused() -> None:
    with pytest.raises(BatchFileError, match=f"{MAX_COLUMNS + 1} columns; at most {MAX_COLUMNS}"):
        dialect(b",".join([b"PLT"] * (MAX_COLUMNS + 1)) + b"\n1\n")
    assert len(dialect(b",".join([b"PLT"] * MAX_COLUMNS) + b"\n1\n").header) == MAX_COLUMNS


def test_a_header_field_beyond_the_csv_modules_limit_is_refused() -> None:
    with pytest.raises(BatchFileError, match="header line cannot be read as CSV"):
        dialect(b'"' + b"x" * 200_000 + b'",PLT\n1,2\n')


def test_a_huge_cell_among_the_sampled_rows_does_not_stop_the_sniffer() -> None:
    found = dialect(b"PLT;Comment\n4,5;" + b"x" * 200_000 + b"\n")
    assert (found.delimiter, found.header) == (";", ["PLT", "Comment"])


def test_a_header_cell_holding_a_unicode_line_separator_stays_in_the_header():
    # U+0085 (NEL) is a line break for str.splitlines but not for CSV: the header has three fields.
    # Found by tests/security/test_fuzz_inputs.py (the row came back as the header's continuation).
    dialect = sniff("\x85,patient_id,platelets\n0,0,0\n".encode(), BatchOptions(), complete=True)
    assert dialect.header[1:] == ["patient_id", "platelets"] and len(dialect.header) == 3
    assert dialect.leading_blank_lines == 0


def test_the_delimiter_is_picked_on_the_whole_header_record_not_its_first_line():
    """Found by hypothesis (tests/batch/test_rows_accounted_for.py): the header's second cell is a quoted line break.
    On the first physical line alone "," and ";" both give two fields and "," won; the header record (up to the
    first line end outside quotes) has seven fields with ";"."""
    found = dialect(b'platelets, 10*9/L;"\n";neutrophils;patient_id;sample_id;collected_at;wbc\n')
    assert found.delimiter == ";"
    assert found.header == ["platelets, 10*9/L", "", "neutrophils", "patient_id", "sample_id", "collected_at", "wbc"]
    assert found.header_lines == 2


def test_a_header_whose_quoted_cells_run_past_the_sample_is_refused() -> None:
    # Every cell holds a quoted line break: the sample ends inside one, so the header record is not complete.
    cell = b'"' + b"x" * 50 + b'\n",'
    with pytest.raises(BatchFileError, match=f"longer than {SAMPLE_BYTES} bytes"):
        dialect((cell * 6000)[:SAMPLE_BYTES], complete=False)


def test_a_header_ending_where_the_sample_is_cut_is_read() -> None:
    # The first record runs past the sample (the sample is cut after the header): the header itself is complete.
    found = dialect((b'"PLT\n(K/uL)";WBC\n' + b"1;" * SAMPLE_BYTES)[:SAMPLE_BYTES], complete=False)
    assert (found.delimiter, found.header, found.header_lines) == (";", ["PLT\n(K/uL)", "WBC"], 2)
