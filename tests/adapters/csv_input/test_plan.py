"""Which column holds what (plan.py): shape, clashes, header units, the explicit mapping, `ignore`.

Unit factors are those of clinical-rules §1 (g/L ÷ 10 = g/dL; /uL ÷ 1000 = 10^9/L; K/uL = 10^9/L).
"""

from __future__ import annotations

import pytest

from labservice.adapters.csv_input.options import BatchFileError, BatchOptions, MappingError
from labservice.adapters.csv_input.plan import plan_columns
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()


def plan(header: list[str], **options):
    return plan_columns(header, BatchOptions(**options), RS)


# -- shape ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "shape", "expected"),
    [
        (["Sample ID", "PLT", "WBC"], "auto", "wide"),
        (["Sample ID", "item", "value"], "auto", "long"),
        (["Sample ID", "item", "value", "unit"], "auto", "long"),
        (["HADM_ID", "CHARTTIME", "ITEMID", "VALUENUM", "VALUEUOM"], "auto", "long"),
        (["Patient ID", "Test", "Result", "Units"], "auto", "long"),
        # item and value columns next to an analyte column: wide unless stated
        (["Sample ID", "item", "value", "PLT"], "auto", "wide"),
        (["Sample ID", "item", "value", "PLT"], "long", "long"),
        (["Sample ID", "PLT"], "wide", "wide"),
    ],
)
def test_shape(header: list[str], shape: str, expected: str) -> None:
    assert plan(header, shape=shape).shape == expected


def test_long_without_an_id_is_refused() -> None:
    with pytest.raises(BatchFileError, match="patient or sample id"):
        plan(["item", "value", "unit"])


def test_long_stated_without_item_and_value_names_them() -> None:
    with pytest.raises(BatchFileError, match="item and value"):
        plan(["Sample ID", "PLT"], shape="long")
    with pytest.raises(BatchFileError, match="needs value column"):
        plan(["Sample ID", "item", "PLT"], shape="long")


@pytest.mark.parametrize(("header", "shape"), [(["Comment", "Ward"], "auto"), (["Sample ID", "item", "value"], "wide")])
def test_wide_without_an_analyte_is_refused(header: list[str], shape: str) -> None:
    with pytest.raises(BatchFileError, match="no column holds a CBC analyte"):
        plan(header, shape=shape)


# -- clashes and units ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "first", "second"),
    [
        (["PLT", "Platelets"], "PLT", "Platelets"),
        (["id", "Hb", "WBC", "HGB (g/L)"], "Hb", "HGB (g/L)"),
        (["NEUT%", "WBC", "Neutrophils (%)"], "NEUT%", "Neutrophils (%)"),
        (["Sex", "Gender", "PLT"], "Sex", "Gender"),
    ],
)
def test_two_columns_for_one_field_name_both(header: list[str], first: str, second: str) -> None:
    with pytest.raises(BatchFileError) as caught:
        plan(header)
    message = str(caught.value)
    assert repr(first) in message and repr(second) in message
    assert "ignore" in message


@pytest.mark.parametrize(
    ("header", "column", "unit"),
    [
        (["PLT (furlongs)"], "PLT (furlongs)", "furlongs"),
        (["id", "WBC (%)"], "WBC (%)", "%"),  # WBC has no percentage twin
        (["Hb [mg]", "PLT"], "Hb [mg]", "mg"),
    ],
)
def test_unknown_header_unit_names_the_column(header: list[str], column: str, unit: str) -> None:
    with pytest.raises(BatchFileError) as caught:
        plan(header)
    message = str(caught.value)
    assert f"column {column!r}" in message
    assert repr(unit) in message


def test_unknown_age_unit_names_the_column() -> None:
    with pytest.raises(BatchFileError, match=r"column 'Age \(fortnights\)': unknown age unit 'fortnights'"):
        plan(["PLT", "Age (fortnights)"])


def test_unknown_unit_from_the_units_option_names_the_column() -> None:
    with pytest.raises(BatchFileError, match=r"column 'PLT': unknown unit 'bogus'"):
        plan(["PLT"], units={"platelets": "bogus"})


@pytest.mark.parametrize(
    ("header", "options", "analyte", "unit", "factor"),
    [
        (["PLT"], {}, "platelets", None, 1.0),
        (["PLT (K/uL)"], {}, "platelets", "K/uL", 1.0),
        (["PLT (/uL)"], {}, "platelets", "/uL", 0.001),
        (["Hb [g/L]"], {}, "hemoglobin", "g/L", 0.1),
        (["HGB (g/dL)"], {}, "hemoglobin", "g/dL", 1.0),
        (["HCT (L/L)"], {}, "hematocrit", "L/L", 100.0),
        (["PLT"], {"units": {"platelets": "/uL"}}, "platelets", "/uL", 0.001),
        # the unit in the header wins over the units option
        (["PLT (K/uL)"], {"units": {"platelets": "/uL"}}, "platelets", "K/uL", 1.0),
    ],
)
def test_wide_column_units_and_factors(header, options, analyte: str, unit: str | None, factor: float) -> None:
    found = plan(header, **options)
    assert found.units[analyte] == unit
    assert found.factors[analyte] == pytest.approx(factor)


@pytest.mark.parametrize(
    ("header", "factor"),
    [
        ("Age", 1.0),
        ("Age (years)", 1.0),
        ("Age (months)", 1 / 12),
        ("Age (weeks)", 7 / 365.25),
        ("Age (days)", 1 / 365.25),
        ("Age (Months)", 1 / 12),
    ],
)
def test_age_unit_factor(header: str, factor: float) -> None:
    assert plan(["PLT", header]).age_factor == pytest.approx(factor)


# -- explicit mapping and ignore --------------------------------------------------------------


def test_explicit_columns_mapping() -> None:
    found = plan(["X1", "X2", "X3"], columns={"X1": "sample_id", "X2": "platelets", "X3": "ignore"})
    assert found.fields == {"sample_id": 0, "platelets": 1}
    assert found.ignored == ["X3"]
    assert found.id_columns == [0]


def test_mapping_keys_match_like_headers() -> None:
    found = plan(["Lab Value 1"], columns={"lab_value.1": "platelets"})
    assert found.fields == {"platelets": 0}


def test_mapping_overrides_the_common_name() -> None:
    # "Retic" alone is read as the percentage; a lab that means the absolute count says so
    assert plan(["Retic"]).fields == {"reticulocytes_percent": 0}
    assert plan(["Retic"], columns={"Retic": "reticulocytes"}).fields == {"reticulocytes": 0}


def test_ignore_resolves_a_clash() -> None:
    found = plan(["PLT", "Platelets"], columns={"Platelets": "ignore"})
    assert found.fields == {"platelets": 0}
    assert found.ignored == ["Platelets"]


def test_mapping_to_an_unknown_field_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="unknown field 'platelet'"):
        plan(["X1"], columns={"X1": "platelet"})


def test_mapping_of_a_missing_column_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="names 'X9', which is not a column"):
        plan(["X1", "PLT"], columns={"X9": "wbc"})


def test_unrecognised_and_blank_headers_are_listed_as_ignored() -> None:
    found = plan(["", "PLT", "Comment", ""])
    assert found.fields == {"platelets": 1}
    assert found.ignored == ["(column 1)", "Comment", "(column 4)"]


def test_id_columns_in_file_order_and_used_columns() -> None:
    found = plan(["PLT", "Collected", "Sample ID", "MRN", "Sex"])
    assert found.id_columns == [1, 2, 3]
    assert found.used() == {
        "PLT": "platelets",
        "Collected": "collected_at",
        "Sample ID": "sample_id",
        "MRN": "patient_id",
        "Sex": "sex",
    }


def test_analytes_in_engine_order() -> None:
    assert plan(["MCV", "Hb", "WBC", "PLT"]).analytes == ["platelets", "wbc", "hemoglobin", "mcv"]


def test_a_column_named_line_is_not_taken_for_anything() -> None:
    found = plan(["line", "PLT"])
    assert found.fields == {"platelets": 1}
    assert found.ignored == ["line"]
