"""The JSON adapter: loaded CBC documents → the engine's table, with every error located."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pytest

from labservice.adapters.errors import InputError
from labservice.adapters.json_cbc import parse_documents
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()


def result(value, unit=None, low=None, high=None):
    rng = None if low is None and high is None else {"low": low, "high": high}
    return {"value": value, "unit": unit, "reference_range": rng}


def test_values_and_lab_ranges_are_converted_to_canonical_units():
    parsed = parse_documents([{"results": {"hemoglobin": result(82, "g/L", 120, 150)}}], RS, indexed=False)
    cols = parsed.columns
    assert cols.values["hemoglobin"][0] == 8.2  # exact: no binary noise from x 0.1
    assert (cols.ref_low["hemoglobin"][0], cols.ref_high["hemoglobin"][0]) == (12.0, 15.0)
    assert parsed.reported[0]["hemoglobin"] == {"value": 82, "unit": "g/L"}


def test_every_bad_field_is_reported_with_its_path_and_index():
    docs = [
        {"results": {"platelets": result(45, "10*9/L")}},
        {"results": {"platelets": result(45, "furlongs"), "hemoglobin": result(82)}},
    ]
    with pytest.raises(InputError) as raised:
        parse_documents(docs, RS, indexed=True)
    errors = raised.value.errors
    assert set(errors) == {"1.results.platelets.unit", "1.results.hemoglobin.value"}
    assert "furlongs" in errors["1.results.platelets.unit"][0]
    assert "did you mean g/L?" in errors["1.results.hemoglobin.value"][0]
    assert raised.value.detail.startswith("1.results.")


def test_single_documents_have_unprefixed_paths():
    with pytest.raises(InputError) as raised:
        parse_documents([{"results": {"platelets": result(210000)}}], RS, indexed=False)
    assert list(raised.value.errors) == ["results.platelets.value"]
    assert "/uL" in raised.value.errors["results.platelets.value"][0]


def test_a_lab_range_whose_low_is_not_below_its_high_is_passed_on_to_be_set_aside():
    # clinical-rules §2 v2: an implausible lab range is "set aside with a note, never a 422, on every path"
    parsed = parse_documents([{"results": {"wbc": result(5, "10*9/L", 11, 4)}}], RS, indexed=False)
    assert (parsed.columns.ref_low["wbc"][0], parsed.columns.ref_high["wbc"][0]) == (11.0, 4.0)


def test_age_comes_from_birth_date_and_collection_time():
    doc = {
        "patient": {"birth_date": date(2016, 11, 20)},
        "collected_at": datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        "results": {"platelets": result(200)},
    }
    age = parse_documents([doc], RS, indexed=False).columns.age_years[0]
    assert age == pytest.approx(3652 / 365.25)


def test_birth_date_without_collection_time_is_an_error_on_collected_at():
    doc = {"patient": {"birth_date": date(2016, 11, 20)}, "results": {"platelets": result(200)}}
    with pytest.raises(InputError) as raised:
        parse_documents([doc], RS, indexed=False)
    assert "collected_at" in raised.value.errors


def test_unstated_context_stays_unknown_not_false():
    cols = parse_documents([{"results": {"platelets": result(200)}}], RS, indexed=False).columns
    for column in (cols.pregnant, cols.duffy_null, cols.fever, cols.platelet_clumps):
        assert math.isnan(column[0])
    assert not cols.skin_reported[0]


def test_lesions_are_flattened_with_their_cbc_row():
    docs = [
        {"results": {"platelets": result(200)}},
        {
            "results": {"platelets": result(12)},
            "skin": {
                "fever": True,
                "lesions": [
                    {"type": "petechiae", "size_mm": None, "blanching": False, "site": "legs"},
                    {"type": None, "size_mm": 12.0, "blanching": True, "palpable": False},
                ],
            },
        },
    ]
    cols = parse_documents(docs, RS, indexed=True).columns
    assert cols.lesions["row"].tolist() == [1, 1]
    assert cols.lesions["type"].tolist() == ["petechiae", ""]
    assert np.isnan(cols.lesions["size_mm"][0]) and cols.lesions["size_mm"][1] == 12.0
    assert cols.lesions["blanching"].tolist() == [0.0, 1.0]
    assert cols.lesions["site"].tolist() == ["legs", None]
    assert cols.fever[1] == 1.0 and cols.skin_reported.tolist() == [False, True]


def test_a_bare_haematocrit_fraction_is_read_as_percent():
    cols = parse_documents([{"results": {"hematocrit": result(0.42)}}], RS, indexed=False).columns
    assert cols.values["hematocrit"][0] == 42.0
