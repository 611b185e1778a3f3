"""Issue 15: the MIMIC-III demo LABEVENTS file (long: one result per row) converted to Parquet goes through the
cluster path with the same answers as the CSV path.

Data: MIMIC-III Clinical Database Demo v1.4, PhysioNet / MIT Laboratory for Computational Physiology (Johnson AEW
et al., Sci Data 2016; https://physionet.org/content/mimiciii-demo/1.4/), LABEVENTS as cut to HADM_ID, ITEMID,
CHARTTIME, VALUE, VALUEUOM, FLAG (see /work/shared/fixtures/README.md). Licensed under the Open Data Commons Open
Database License v1.0 (ODbL; /work/shared/fixtures/mimic-iii-demo/LICENSE.txt): attribution to PhysioNet and
MIT-LCP; share-alike for derived databases. The file is read unchanged; its Parquet copy is made in the test's
temporary directory and not kept.

The copy is made as anyone would make it (pandas reads the CSV with its own type guesses: HADM_ID becomes a float
column because some rows have none, ITEMID an integer column) and is cut into 3 files, so results of one CBC lie
in different files and partitions and meet only through the shuffle on the CBC key.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster

from labservice.batch import BatchOptions, load_mapping_file, run_batch
from labservice.batch.builtin_mappings import builtin_mapping_path
from labservice.cli import main
from labservice.core.ruleset import default_ruleset
from tests.batch.distributed.generated import GeneratedFiles
from tests.batch.distributed.same_answers import assert_same_rows, csv_frame, parquet_frame
from tests.shared_data import MIMIC_LABEVENTS

pytestmark = pytest.mark.skipif(not MIMIC_LABEVENTS.exists(), reason="MIMIC-III demo fixture not present")
PARTS = 3


@pytest.fixture(scope="module")
def parquet_copy(tmp_path_factory: pytest.TempPathFactory) -> GeneratedFiles:
    frame = pd.read_csv(MIMIC_LABEVENTS)
    folder = tmp_path_factory.mktemp("mimic") / "labevents"
    folder.mkdir()
    sizes = []
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
        frame.iloc[rows].to_parquet(folder / f"part.{number:02d}.parquet", index=False, row_group_size=8_000)
        sizes.append(len(rows))
    return GeneratedFiles(MIMIC_LABEVENTS, folder, sizes)


def test_mimic_labevents_as_parquet_on_the_cluster_answers_as_the_csv(
    parquet_copy: GeneratedFiles, cluster: LocalCluster, tmp_path: Path
) -> None:
    out, summary_path = tmp_path / "out", tmp_path / "summary.json"
    argv = ["interpret", str(parquet_copy.parts), "-o", str(out), "--mapping", "mimic-iii-labevents"]
    argv += ["--scheduler", cluster.scheduler_address, "--partition-rows", "10000", "--summary", str(summary_path)]
    code = main([*argv, "--no-progress"])

    mapping = builtin_mapping_path("mimic-iii-labevents")
    assert mapping is not None
    single = io.StringIO()
    with MIMIC_LABEVENTS.open("rb") as handle:
        expected = run_batch(
            handle, csv_out=single, options=load_mapping_file(mapping, BatchOptions()), ruleset=default_ruleset()
        )
    assert code == (1 if expected.rejected else 0)
    compared = assert_same_rows(csv_frame(single.getvalue()), parquet_frame(out), parquet_copy.where)
    assert {"HADM_ID", "CHARTTIME", "urgency", "findings", "film", "neutrophils_flag", "error"} <= set(compared)

    got = json.loads(summary_path.read_text(encoding="utf-8"))
    assert got["shape"] == "long"
    # Every input row is accounted for: read (all 76,074 results), and in a CBC or counted as ignored.
    assert got["rows_in"] == expected.rows_in == sum(parquet_copy.rows_per_part)
    for name in ("rows_out", "interpreted", "rejected", "ignored_results", "ignored_items", "duplicates"):
        assert got[name] == getattr(expected, name), name
    assert got["by_urgency"] == expected.by_urgency
    assert got["by_finding"] == expected.by_finding
    assert got["rejected"] > 0  # results without an admission id: "no id", each naming its file and row
    assert all(" row " in text for text in got["first_errors"])
