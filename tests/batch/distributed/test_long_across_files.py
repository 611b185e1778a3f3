"""Long Parquet input (one result per row) in this process (`labservice interpret` without --cluster): results of
one CBC in two files meet in one CBC; every row is accounted for, a rejected one naming its file and row.

Expected flags from clinical-rules §2 (adult fallback, no age sent: platelets 150-410, WBC 4.0-10.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from labservice.cli import main

COLUMNS = ["patient_id", "collected_at", "item", "value", "unit"]
WHEN = "2026-03-01T08:00:00"


def _part(path: Path, rows: list[tuple]) -> None:
    pd.DataFrame(rows, columns=COLUMNS).to_parquet(path, index=False)


def test_a_cbc_split_over_two_files_is_one_cbc_and_every_row_is_accounted_for(tmp_path: Path) -> None:
    parts = tmp_path / "in"
    parts.mkdir()
    _part(
        parts / "part.1.parquet",
        [
            ("P1", WHEN, "PLT", "100", "10*9/L"),  # row 1: P1's platelets
            ("P2", WHEN, "WBC", "6.0", "10*9/L"),  # row 2
            ("P1", WHEN, "glucose", "5.1", "mmol/L"),  # row 3: not a CBC item (ignored)
        ],
    )
    _part(
        parts / "part.2.parquet",
        [
            ("P1", WHEN, "WBC", "12", "10*9/L"),  # row 1: P1's WBC, in the other file
            ("P2", WHEN, "PLT", "abc", "10*9/L"),  # row 2: not a number: P2's CBC is rejected
            (None, WHEN, "PLT", "200", "10*9/L"),  # row 3: no id, but a time: one CBC by that time (docs/batches.md)
            (None, None, "WBC", "5.0", "10*9/L"),  # row 4: neither id nor time: cannot be grouped
        ],
    )
    out, summary_path = tmp_path / "out", tmp_path / "summary.json"
    code = main(["interpret", str(parts), "-o", str(out), "--summary", str(summary_path), "--partition-rows", "2"])
    assert code == 1  # some rows rejected
    rows = pd.read_parquet(out).set_index("patient_id", drop=False)
    assert len(rows) == 4  # P1, P2, the CBC grouped by its time alone, and the results that cannot be grouped
    p1 = rows.loc["P1"]
    assert (p1["source_file"], p1["source_row"]) == ("part.1.parquet", 1)  # where its first result is
    assert (p1["platelets_flag"], p1["wbc_flag"]) == ("L", "H")  # 100 < 150; 12 > 10.0
    assert pd.isna(p1["error"])
    p2 = rows.loc["P2"]
    assert p2["error"] == "part.2.parquet row 2, column value: 'abc' is not a number"
    no_id = rows[rows["patient_id"].isna()].set_index("source_row")
    assert no_id.loc[3, "platelets_flag"] == "N"  # 200: within 150-410
    assert no_id.loc[3, "notes"].startswith("no id (patient_id): these results were grouped into one CBC by")
    assert no_id.loc[4, "error"].startswith("part.2.parquet row 4, column patient_id: no id and no collection time")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["rows_in"] == 7
    assert summary["ignored_results"] == 1 and summary["ignored_items"] == {"glucose": 1}
    assert (summary["rows_out"], summary["interpreted"], summary["rejected"]) == (4, 2, 2)
    assert summary["first_errors"][0] == "part.2.parquet row 2, column value: 'abc' is not a number"
