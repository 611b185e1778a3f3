"""What a batch's summary says about the file as a whole (issue 14 item 6: nothing a file says is dropped).

A header `id` is read as a sample id (labservice.adapters.csv_input.headers), so a file whose only id column is
`id` has no patient id: nothing of it can be stored for the worklist, and the summary says so loudly.
"""

from __future__ import annotations

import io

import pytest

from labservice.batch import BatchOptions, run_batch
from labservice.batch.summary import patient_id_warning
from tests.batch.encoded_files import ID_ONLY_BYTES, id_only_file


def summary_of(data: bytes, **options):
    return run_batch(io.BytesIO(data), csv_out=io.StringIO(), options=BatchOptions(**options))


def test_a_header_id_read_as_a_sample_id_is_said_loudly(tmp_path):
    path = id_only_file(tmp_path)
    with path.open("rb") as source:
        summary = run_batch(source, csv_out=io.StringIO())
    assert summary.columns_used["id"] == "sample_id"
    warning = summary.patient_id_warning
    assert warning is not None
    assert "the column `id` was read as a sample id" in warning
    assert "these rows have no patient id and will not appear in the worklist; map a patient column" in warning
    assert '{"columns": {"id": "patient_id"}}' in warning and "--column id=patient_id" in warning
    assert summary.warnings[0] == warning  # first among the warnings
    assert summary.to_dict()["patient_id_warning"] == warning  # in the summary JSON
    assert f"warning: {warning}" in summary.describe()  # and in what the command line prints
    assert (summary.interpreted, summary.rejected) == (2, 1)  # the rows are still interpreted


def test_a_file_with_no_id_column_at_all_is_said_too():
    summary = summary_of(b"PLT,HGB\n45,12.5\n")
    assert summary.patient_id_warning is not None
    assert "read as a sample id" not in summary.patient_id_warning
    assert "will not appear in the worklist" in summary.patient_id_warning


@pytest.mark.parametrize("header", ["MRN", "Patient ID", "patient_id", "NHS number"])
def test_a_patient_column_needs_no_warning(header):
    summary = summary_of(f"{header},id,PLT\nP1,S1,45\n".encode())
    assert summary.patient_id_warning is None
    assert summary.warnings == []


def test_mapping_the_id_column_to_the_patient_takes_the_warning_away():
    summary = summary_of(ID_ONLY_BYTES, columns={"id": "patient_id"})
    assert summary.columns_used["id"] == "patient_id"
    assert summary.patient_id_warning is None


def test_the_warning_is_made_from_the_columns_read():
    assert patient_id_warning({"MRN": "patient_id", "PLT": "platelets"}) is None
    said = patient_id_warning({"Accession": "sample_id", "PLT": "platelets"})
    assert said is not None and "the column `Accession` was read as a sample id" in said
