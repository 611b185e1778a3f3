"""Long files (long.py): one row per result, grouped into CBCs by id and time, in order of first appearance.

Items resolve through the `items` mapping, then the LOINC codes of clinical-rules §1, then the
common names; unit factors are those of §1 (/uL ÷ 1000, g/L ÷ 10). Line 1 is the header.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from labservice.adapters.csv_input.dialect import SAMPLE_BYTES, sniff
from labservice.adapters.csv_input.long import NO_ANALYTE, LongFile, item_resolver
from labservice.adapters.csv_input.options import BatchOptions, MappingError, check_options
from labservice.adapters.csv_input.plan import plan_columns
from labservice.adapters.csv_input.reader import read_records
from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch.stream import HashingStream, rewound
from labservice.core.ruleset import default_ruleset
from labservice.core.table import ANALYTES

RS = default_ruleset()


def read_long(
    data: bytes, chunk_rows: int = 1000, out_rows: int = 1000, **options
) -> tuple[LongFile, list[ParsedChunk]]:
    """Read a long file as run_batch does; (the LongFile, the ParsedChunks of CBCs)."""
    opts = BatchOptions(**options)
    check_options(opts)
    source = io.BytesIO(data)
    stream = HashingStream(source)
    found = sniff(stream.peek_sample(SAMPLE_BYTES), opts, complete=stream.exhausted)
    plan = plan_columns(found.header, opts, RS)
    assert plan.shape == "long"
    long_file = LongFile(plan, opts, found.decimal, RS)
    for records in read_records(
        io.BufferedReader(stream),
        found,
        {plan.fields["value"]},
        chunk_rows,
        reopen=lambda: rewound(source, 0),
        quotes_read=lambda: stream.quotes,
    ):
        long_file.add(records)
    return long_file, list(long_file.chunks(out_rows))


def cbcs(data: bytes, **kwargs) -> list[dict]:
    """One dict per CBC: line, ids, errors, notes and the analyte values present (NaN left out)."""
    _, chunks = read_long(data, **kwargs)
    out = []
    for chunk in chunks:
        for row in range(chunk.n):
            values = {
                name: float(column[row])
                for name, column in chunk.table.items()
                if name in ANALYTES and not math.isnan(column[row])
            }
            out.append(
                {
                    "line": int(chunk.lines[row]),
                    "ids": [ids[row] for ids in chunk.ids],
                    "error": chunk.errors[row],
                    "note": chunk.notes[row],
                    "values": values,
                }
            )
    return out


# -- items ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "analyte"),
    [
        ("777-3", "platelets"),
        ("26515-7", "platelets"),
        ("6690-2", "wbc"),
        ("26464-8", "wbc"),
        ("804-5", "wbc"),
        ("718-7", "hemoglobin"),
        ("20509-6", "hemoglobin"),
        ("59260-0", "hemoglobin"),
        ("4544-3", "hematocrit"),
        ("20570-8", "hematocrit"),
        ("789-8", "rbc"),
        ("26453-1", "rbc"),
        ("787-2", "mcv"),
        ("30428-7", "mcv"),
        ("785-6", "mch"),
        ("786-4", "mchc"),
        ("788-0", "rdw"),
        ("21000-5", "rdw_sd"),  # clinical-rules §1 v2: 21000-5 is RDW-SD, analyte rdw_sd
        ("736-9", "lymphocytes_percent"),
        ("26478-8", "lymphocytes_percent"),  # clinical-rules §1 v2
        ("751-8", "neutrophils"),
        ("26499-4", "neutrophils"),
        ("731-0", "lymphocytes"),
        ("26474-7", "lymphocytes"),
        ("60474-4", "reticulocytes"),
        ("14196-0", "reticulocytes"),
        ("17849-1", "reticulocytes_percent"),
        ("4679-7", "reticulocytes_percent"),
        ("31112-6", "reticulocytes_percent"),
        (" 777-3 ", "platelets"),
    ],
)
def test_item_by_loinc_code(item: str, analyte: str) -> None:
    assert item_resolver(BatchOptions(), RS)(item) == ANALYTES.index(analyte)


@pytest.mark.parametrize(
    ("item", "analyte"),
    [
        ("PLT", "platelets"),
        ("Platelet Count", "platelets"),
        ("HGB", "hemoglobin"),
        ("Hb", "hemoglobin"),
        ("WBC", "wbc"),
        ("NEUT#", "neutrophils"),
        ("ANC", "neutrophils"),
        ("NEUT%", "neutrophils_percent"),
        ("LYMPH#", "lymphocytes"),
        ("RETIC#", "reticulocytes"),
        ("RETIC%", "reticulocytes_percent"),
        ("MCV", "mcv"),
    ],
)
def test_item_by_name(item: str, analyte: str) -> None:
    assert item_resolver(BatchOptions(), RS)(item) == ANALYTES.index(analyte)


@pytest.mark.parametrize(
    "item",
    [
        "58410-2",
        "57021-8",  # CBC panel codes, not results
        "2951-2",
        "Sodium",
        "CRP",
        "",
        "Sex",
        "Age",
    ],  # not CBC analytes (context fields are not results)
)
def test_item_that_is_not_an_analyte(item: str) -> None:
    assert item_resolver(BatchOptions(), RS)(item) == NO_ANALYTE


def test_item_by_mapping_first() -> None:
    options = BatchOptions(items={"51265": "platelets", "51222": "hemoglobin", "Lab_Code-7": "wbc", "777-3": "wbc"})
    resolve = item_resolver(options, RS)
    assert resolve("51265") == ANALYTES.index("platelets")
    assert resolve("51222") == ANALYTES.index("hemoglobin")
    assert resolve("lab code 7") == ANALYTES.index("wbc")  # mapping keys match like names
    assert resolve("777-3") == ANALYTES.index("wbc")  # the mapping wins over the LOINC code
    assert resolve("51301") == NO_ANALYTE


def test_results_by_mapping_code_and_name_make_one_cbc() -> None:
    data = b"sample_id,item,value\nS1,51265,150\nS1,718-7,13.5\nS1,WBC,6.2\n"
    assert cbcs(data, items={"51265": "platelets"}) == [
        {
            "line": 2,
            "ids": ["S1"],
            "error": None,
            "note": None,
            "values": {"platelets": 150.0, "wbc": 6.2, "hemoglobin": 13.5},
        }
    ]


def test_unmapped_items_are_counted_as_ignored() -> None:
    data = b"sample_id,item,value\nS1,PLT,150\nS1,Sodium,140\nS2,PLT,90\nS2,Sodium,138\nS2,CRP,5\nS3,Sodium,139\n"
    long_file, chunks = read_long(data)
    assert dict(long_file.results.ignored) == {"Sodium": 3, "CRP": 1}
    # S3 had only ignored results: it is no CBC
    assert [ids.tolist() for chunk in chunks for ids in chunk.ids] == [["S1", "S2"]]
    assert long_file.analytes() == ["platelets"]


def test_items_mapping_to_an_unknown_analyte_is_refused() -> None:
    """Regression: a typo in the items mapping silently turned every such result into an ignored item."""
    with pytest.raises(MappingError, match="platelet"):
        read_long(b"sample_id,item,value\nS1,51265,150\n", items={"51265": "platelet"})


# -- duplicates -------------------------------------------------------------------------------


def test_conflicting_values_in_one_cbc_name_both_lines() -> None:
    rows = cbcs(b"sample_id,item,value\nS1,PLT,150\nS2,PLT,90\nS1,PLT,160\n")
    assert rows[0]["line"] == 2
    assert rows[0]["error"] == "lines 2, 4: different values for platelets in one CBC"
    assert rows[1]["error"] is None


def test_conflicting_values_across_chunks_name_both_lines() -> None:
    data = b"sample_id,item,value\nS1,PLT,150\nS2,PLT,90\nS3,PLT,80\nS1,HGB,13\nS1,PLT,160\n"
    rows = cbcs(data, chunk_rows=1, out_rows=1)
    assert rows[0]["ids"] == ["S1"]
    assert rows[0]["error"] == "lines 2, 6: different values for platelets in one CBC"


def test_conflict_after_unit_conversion_is_no_conflict() -> None:
    # 150000 /uL is 150 10^9/L: the same result sent twice in two units
    data = b"sample_id,item,value,unit\nS1,PLT,150,10^9/L\nS1,PLT,150000,/uL\n"
    long_file, _ = read_long(data)
    rows = cbcs(data)
    assert rows[0]["error"] is None
    assert rows[0]["note"] == "platelets sent more than once (lines 2, 3)"
    assert long_file.duplicates == 1


def test_equal_duplicates_are_a_note() -> None:
    data = b"sample_id,item,value\nS1,PLT,150\nS2,PLT,90\nS2,HGB,12\nS2,PLT,90\nS2,HGB,12.0\n"
    long_file, _ = read_long(data)
    rows = cbcs(data)
    assert rows[0]["note"] is None
    assert rows[1]["error"] is None
    assert rows[1]["note"] == (
        "platelets sent more than once (lines 3, 5); hemoglobin sent more than once (lines 4, 6)"
    )
    assert rows[1]["values"] == {"platelets": 90.0, "hemoglobin": 12.0}
    assert long_file.duplicates == 2


# -- units ------------------------------------------------------------------------------------


def test_unit_column_per_row() -> None:
    data = (
        b"sample_id,item,value,unit\nS1,PLT,150000,/uL\nS1,HGB,135,g/L\nS1,WBC,6.2,\n"
        b"S2,PLT,90,K/uL\nS2,HGB,8.1,mmol/L\n"
    )
    rows = cbcs(data)
    assert rows[0]["values"] == {"platelets": 150.0, "wbc": 6.2, "hemoglobin": 13.5}
    assert rows[1]["values"]["platelets"] == 90.0
    assert rows[1]["values"]["hemoglobin"] == pytest.approx(8.1 / 0.6206, rel=1e-3)


def test_units_from_item_units_and_units_options() -> None:
    data = b"sample_id,item,value\nS1,PLT,150000\nS1,HGB,135\nS1,WBC,6.2\n"
    rows = cbcs(data, item_units={"PLT": "/uL"}, units={"hemoglobin": "g/L"})
    assert rows[0]["values"] == {"platelets": 150.0, "wbc": 6.2, "hemoglobin": 13.5}


def test_unit_column_wins_over_item_units() -> None:
    data = b"sample_id,item,value,unit\nS1,PLT,150,K/uL\nS2,PLT,90000,\n"
    rows = cbcs(data, item_units={"PLT": "/uL"})
    assert rows[0]["values"] == {"platelets": 150.0}
    assert rows[1]["values"] == {"platelets": 90.0}


def test_unknown_unit_is_an_error_naming_line_and_unit_column() -> None:
    data = b"sample_id,item,value,Units\nS1,PLT,150,K/uL\nS2,PLT,90,furlongs\n"
    rows = cbcs(data)
    assert rows[0]["error"] is None
    assert rows[1]["error"].startswith("line 3, column Units: unknown unit ")
    assert "furlongs" in rows[1]["error"]
    assert "platelets" in rows[1]["error"]


def test_unknown_unit_message_quotes_the_unit_as_written() -> None:
    """Regression: the message showed the numpy repr np.str_('furlongs')."""
    rows = cbcs(b"sample_id,item,value,Units\nS2,PLT,90,furlongs\n")
    assert "unknown unit 'furlongs' for platelets" in rows[0]["error"]


def test_censored_value_is_converted_with_its_unit() -> None:
    _, chunks = read_long(b"sample_id,item,value,unit\nS1,PLT,<20000,/uL\nS1,HGB,13,g/dL\n")
    op, bound = chunks[0].censored["platelets"]
    assert op.tolist() == [-1]
    assert bound.tolist() == [20.0]
    assert chunks[0].censored_columns == {"platelets": "value"}


def test_value_that_is_not_a_number_names_line_and_value_column() -> None:
    rows = cbcs(b"sample_id,item,Result\nS1,PLT,150\nS1,HGB,abc\n")
    assert rows[0]["error"] == "line 3, column Result: 'abc' is not a number"


# -- grouping ---------------------------------------------------------------------------------

GROUPS = (
    b"sample_id,item,value\n"
    b"S2,PLT,210\n"  # 2
    b"S1,PLT,220\n"  # 3
    b"S3,PLT,230\n"  # 4
    b"S1,HGB,13\n"  # 5
    b"S2,HGB,12\n"  # 6
    b"S4,HGB,14\n"  # 7
    b"S3,WBC,5\n"
)  # 8


@pytest.mark.parametrize(("chunk_rows", "out_rows"), [(1000, 1000), (1, 1), (2, 3), (3, 2), (1, 1000), (1000, 1)])
def test_groups_in_order_of_first_appearance_across_chunks(chunk_rows: int, out_rows: int) -> None:
    rows = cbcs(GROUPS, chunk_rows=chunk_rows, out_rows=out_rows)
    assert [(row["line"], row["ids"]) for row in rows] == [(2, ["S2"]), (3, ["S1"]), (4, ["S3"]), (7, ["S4"])]
    assert [row["values"] for row in rows] == [
        {"platelets": 210.0, "hemoglobin": 12.0},
        {"platelets": 220.0, "hemoglobin": 13.0},
        {"platelets": 230.0, "wbc": 5.0},
        {"hemoglobin": 14.0},
    ]
    assert all(row["error"] is None for row in rows)


def test_collection_time_separates_cbcs_of_one_patient() -> None:
    data = (
        b"patient_id,collected_at,item,value\nP1,2026-01-01 08:00,PLT,100\nP1,2026-01-02 08:00,PLT,200\n"
        b"P1,2026-01-01 08:00,HGB,13\n"
    )
    rows = cbcs(data)
    assert [(row["line"], row["ids"], row["values"]) for row in rows] == [
        (2, ["P1", "2026-01-01 08:00"], {"platelets": 100.0, "hemoglobin": 13.0}),
        (3, ["P1", "2026-01-02 08:00"], {"platelets": 200.0}),
    ]


def test_missing_id_without_a_collection_time_is_an_error() -> None:
    rows = cbcs(b"Sample ID,item,value\nS1,PLT,100\n,PLT,200\nS2,PLT,300\n")
    assert [row["line"] for row in rows] == [2, 3, 4]
    assert rows[1]["error"] == (
        "line 3, column Sample ID: no id and no collection time: the results cannot be grouped into a CBC"
    )
    assert rows[0]["error"] is None and rows[2]["error"] is None


def test_missing_id_with_a_collection_time_is_one_cbc_by_that_time_with_a_note() -> None:
    """Issue 13's MIMIC 2105-05-13 08:30 CBC has no HADM_ID: results without an id are one CBC per time."""
    rows = cbcs(
        b"HADM_ID,CHARTTIME,ITEMID,VALUE\n,2105-05-13 08:30:00,PLT,14\n,2105-05-13 08:30:00,HGB,8.9\n"
        b",2105-05-13 11:15:00,PLT,27\nA1,2105-05-13 08:30:00,PLT,300\n"
    )
    assert [(row["line"], row["values"], row["error"]) for row in rows] == [
        (2, {"platelets": 14.0, "hemoglobin": 8.9}, None),
        (4, {"platelets": 27.0}, None),
        (5, {"platelets": 300.0}, None),
    ]
    assert "grouped into one CBC by collection time (CHARTTIME) alone" in rows[0]["note"]
    assert rows[2]["note"] is None


def test_results_without_an_id_that_disagree_at_one_time_are_refused() -> None:
    """Two different platelet counts at one time and no id are two patients' draws, not one CBC."""
    rows = cbcs(
        b"HADM_ID,CHARTTIME,ITEMID,VALUE\n,2105-05-13 08:30:00,PLT,14\n,2105-05-13 08:30:00,PLT,250\n",
    )
    assert len(rows) == 1 and "different values for platelets in one CBC" in rows[0]["error"]


def test_context_is_taken_from_the_first_row_that_gives_it() -> None:
    _, chunks = read_long(b"sample_id,sex,age,item,value\nS1,,,PLT,100\nS1,F,40,HGB,11\nS1,M,50,WBC,5\n")
    assert chunks[0].table["sex"].tolist() == ["female"]
    assert chunks[0].table["age_years"].tolist() == [40.0]


def test_bad_lines_come_out_with_the_cbcs() -> None:
    _, chunks = read_long(b"sample_id,item,value\nS1,PLT,100\nS1,HGB,13,EXTRA\nS2,PLT,200\n")
    assert [line for chunk in chunks for line, _ in chunk.bad_lines] == [3]
    assert np.concatenate([chunk.lines for chunk in chunks]).tolist() == [2, 4]


def test_file_without_a_single_analyte_result_still_reports_its_bad_lines() -> None:
    long_file, chunks = read_long(b"sample_id,item,value\nS1,Sodium,140\nS1,K,4.1,EXTRA\n")
    assert sum(chunk.n for chunk in chunks) == 0
    assert [bad for chunk in chunks for bad in chunk.bad_lines] == [(3, "more fields than the header's 3")]
    assert dict(long_file.results.ignored) == {"Sodium": 1}
