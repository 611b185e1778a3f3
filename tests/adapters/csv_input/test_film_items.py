"""Long files: film results (clinical-rules §10 v2) join the CBC of their id and collection time, wherever
they stand in the file; a film result with no count of its own CBC is not a CBC (counted as ignored); a
word that is not a schistocyte grade names its own line. Built-in MIMIC-III mapping: 51287 schistocytes
(text), 51265 platelets, 51222 haemoglobin, 51148 blasts (%)."""

from __future__ import annotations

import io
from pathlib import Path

from labservice.batch import BatchOptions, load_mapping_file, run_batch

MIMIC_MAPPING = Path(__file__).resolve().parents[3] / "labservice" / "batch" / "mappings" / "mimic-iii-labevents.json"
HEADER = "HADM_ID,ITEMID,CHARTTIME,VALUE,VALUEUOM,FLAG"
AT = "2100-01-01 00:00:00"


def run(lines: list[str]):
    options = load_mapping_file(MIMIC_MAPPING, BatchOptions())
    out = io.StringIO()
    summary = run_batch(io.BytesIO(("\n".join([HEADER, *lines]) + "\n").encode()), csv_out=out, options=options)
    rows = out.getvalue().splitlines()
    return rows[0].split(","), rows[1:], summary


def test_a_film_result_before_the_counts_joins_their_cbc():
    # Platelets 40 (< 150), Hb 9.0 (below every WHO cut-off of §4), schistocytes OCCASIONAL (= present):
    # the thrombotic-microangiopathy pattern (clinical-rules §10 v2).
    header, rows, _ = run([f"1,51287,{AT},OCCASIONAL,,", f"1,51265,{AT},40,K/uL,", f"1,51222,{AT},9.0,g/dL,"])
    assert len(rows) == 1
    assert "film" in header
    assert "thrombotic_microangiopathy_pattern" in rows[0]
    assert "schistocytes present" in rows[0]


def test_a_film_result_without_counts_is_not_a_cbc():
    _, rows, summary = run([f"1,51265,{AT},250,K/uL,", f"2,51287,{AT},1+,,"])
    assert len(rows) == 1  # only HADM 1 is a CBC
    assert summary.ignored_items == {"51287": 1}


def test_a_word_that_is_not_a_grade_names_its_line():
    _, rows, _ = run([f"1,51287,{AT},LOTS,,", f"1,51265,{AT},40,K/uL,"])
    assert "line 2, column VALUE: 'LOTS' is not a schistocyte grade" in rows[0]
