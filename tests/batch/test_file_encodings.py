"""Files in the encodings spreadsheets save (issue 14 item 6): real Windows-1252 and UTF-16 files on disk.

Windows-1252 header units (`x10³/µL`: the bytes B3 and B5) are read, and the summary says which encoding was
read; a UTF-16 file is refused as a whole with what to do ("save it as CSV UTF-8"). Expected values from
clinical-rules.md: platelets 45 < 150 is thrombocytopenia, CTCAE v5.0 grade 3 (< 50 to 25, §4); x10³/µL is
×10⁹/L (§1: 10^9/L = 10^3/µL); WBC 2.1 < 4.0 is L (§2).
"""

from __future__ import annotations

import csv
import io

import pytest

from labservice.batch import BatchFileError, run_batch
from tests.batch.encoded_files import utf16_file, windows_1252_file


def test_a_windows_1252_file_with_header_units_is_read(tmp_path):
    path = windows_1252_file(tmp_path)
    assert b"\xb3/\xb5L" in path.read_bytes()  # the real bytes: not UTF-8
    out = io.StringIO()
    with path.open("rb") as source:
        summary = run_batch(source, csv_out=out)
    assert summary.encoding == "cp1252"
    assert any("it was read as Windows-1252" in warning for warning in summary.warnings)
    assert (summary.delimiter, summary.decimal) == (";", ",")
    assert summary.columns_used["PLT (x10³/µL)"] == "platelets"
    assert summary.columns_used["WBC (x10³/µL)"] == "wbc"
    assert (summary.interpreted, summary.rejected) == (2, 0)
    first, second = csv.DictReader(io.StringIO(out.getvalue()), delimiter=";")  # written in the input's dialect
    assert first["MRN"] == "W1252-1"
    assert (first["platelets_flag"], first["platelets_ctcae_grade"]) == ("L", "3")
    assert "thrombocytopenia" in first["findings"].split(";")
    assert first["wbc_flag"] == "L"
    assert second["platelets_flag"] == "N"


def test_a_utf16_file_is_refused_saying_save_it_as_csv_utf8(tmp_path):
    path = utf16_file(tmp_path)
    assert path.read_bytes()[:2] == b"\xff\xfe"  # Excel's "Unicode text": UTF-16 with its byte order mark
    with path.open("rb") as source, pytest.raises(BatchFileError) as refused:
        run_batch(source, csv_out=io.StringIO())
    assert "UTF-16" in str(refused.value) and "save it as CSV UTF-8" in str(refused.value)
