"""Issue 15: the same rows give the same answers on a real LocalCluster (2 worker processes) as in one process.

200,000 generated CBCs in 8 Parquet parts go through `labservice interpret --scheduler` (the cluster's address);
the same rows as one CSV go through run_batch, the single-process path the command has always had. Every output
column is compared row by row, the summaries count by count.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from labservice.batch import BatchOptions, run_batch
from labservice.batch.distributed.rulesets import worker_ruleset
from labservice.cli import main
from labservice.core.ruleset import default_ruleset
from tests.batch.distributed.generated import GeneratedFiles, wide_frame, write_files
from tests.batch.distributed.same_answers import assert_same_rows, csv_frame, parquet_frame

ROWS, PARTS = 200_000, 8


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> GeneratedFiles:
    return write_files(wide_frame(ROWS), tmp_path_factory.mktemp("generated"), PARTS)


def test_200000_cbcs_in_8_parts_on_2_workers_answer_as_one_process(
    files: GeneratedFiles, cluster: LocalCluster, observer: Client, tmp_path: Path
) -> None:
    out, summary_path = tmp_path / "out", tmp_path / "summary.json"
    code = main(
        [
            "interpret",
            str(files.parts),
            "-o",
            str(out),
            "--scheduler",
            cluster.scheduler_address,
            "--partition-rows",
            "25000",
            "--summary",
            str(summary_path),
            "--no-progress",
        ]
    )
    single = io.StringIO()
    with files.csv.open("rb") as handle:
        expected = run_batch(handle, csv_out=single, options=BatchOptions(), ruleset=default_ruleset(), jobs=1)
    assert code == 1  # some rows are rejected (the generated bad cells), as in one process
    parts = sorted(out.glob("*.parquet"))
    assert len(parts) == PARTS  # one part per partition: 8 pieces of 25,000 rows
    compared = assert_same_rows(csv_frame(single.getvalue()), parquet_frame(out), files.where)
    assert {"urgency", "findings", "platelets_flag", "wbc_ctcae_grade", "notes", "error"} <= set(compared)

    got = json.loads(summary_path.read_text(encoding="utf-8"))
    for name in ("rows_in", "rows_out", "interpreted", "rejected", "duplicates", "censored_interpreted"):
        assert got[name] == getattr(expected, name), name
    assert got["rows_out"] == ROWS
    assert got["by_urgency"] == expected.by_urgency
    assert got["by_finding"] == expected.by_finding
    # The generated bad cells: 15 'clotted' WBC, 10 implausible platelet counts, 5 rows with no value at all; the 25
    # censored WBC (<0.5, >500) lie beyond every WBC threshold (clinical-rules §3: < 2.0, > 30; CTCAE grade 4 < 1.0),
    # so every value they stand for reads alike and they are interpreted, with a note.
    assert got["rejected"] == 30
    assert got["censored_interpreted"] == 25
    assert got["duplicates"] > 0
    first = [files.where(int(text.split(",")[0].split()[1])) for text in expected.first_errors[:3]]
    assert [text.split(",")[0] for text in got["first_errors"][:3]] == [f"{f} row {r}" for f, r in first]

    # The rule tables were loaded once in each worker process, however many partitions it ran.
    loads = observer.run(lambda: worker_ruleset.cache_info().misses)
    assert sorted(loads.values()) == [1, 1]
