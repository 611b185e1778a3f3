"""OBX-11 result status (HL7 table 0085): final used, preliminary used and labelled, no result never."""

from __future__ import annotations

import pytest

from labservice.adapters.hl7v2.statuses import read_status


@pytest.mark.parametrize("code", ["F", "C", "U", "A", "B", "V", "f"])
def test_final_statuses_are_used_as_final(code):
    status = read_status(code)
    assert (status.used, status.final) == (True, True)


@pytest.mark.parametrize("code", ["P", "R", "S"])
def test_preliminary_statuses_are_used_and_not_final(code):
    status = read_status(code)
    assert (status.used, status.final) == (True, False)


@pytest.mark.parametrize("code", ["Z", "", "Q"])
def test_statuses_outside_table_0085_are_used_as_not_final(code):
    status = read_status(code)  # nHapi's messages send Z
    assert (status.used, status.final) == (True, False)
    assert "0085" in status.meaning or status.meaning == "no result status"


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("I", "pending"),
        ("O", "order detail"),
        ("N", "not asked"),
        ("X", "cannot be obtained"),
        ("D", "deletes"),
        ("W", "wrong"),
    ],
)
def test_no_result_and_withdrawn_statuses_are_never_used(code, meaning):
    status = read_status(code)
    assert status.used is False
    assert meaning in status.meaning
