"""Issue 15: a worker process killed mid-run (SIGKILL, for real) and the job still finishes with every row once.

The job runs in a thread through `labservice interpret --scheduler`; the test watches the cluster with its own
client and, once a first Parquet part is written and a worker is running another partition, kills that worker's
process. The scheduler runs the lost partitions again on the other worker (and on the one its nanny starts in its
place); each part is written under its partition's name, so a partition run twice is written once. The output is
then compared with the single-process run, row by row.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from labservice.batch import BatchOptions, run_batch
from labservice.cli import main
from labservice.core.ruleset import default_ruleset
from tests.batch.distributed.conftest import local_cluster
from tests.batch.distributed.generated import wide_frame, write_files
from tests.batch.distributed.same_answers import assert_same_rows, csv_frame, parquet_frame

ROWS, PARTS = 80_000, 8
#: Bounds on the waits below (each ends as soon as its condition holds; these only stop a test that hangs).
WAIT_SECONDS = 120


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: one of its workers is killed."""
    with local_cluster() as running:
        yield running


def _wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)  # polling a condition, not waiting a fixed time
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_run_and_every_row_is_written_once(own_cluster: LocalCluster, tmp_path: Path) -> None:
    files = write_files(wide_frame(ROWS, seed=16), tmp_path, PARTS)
    out = tmp_path / "out"
    codes: list[int] = []
    argv = ["interpret", str(files.parts), "-o", str(out), "--scheduler", own_cluster.scheduler_address]
    argv += ["--partition-rows", str(ROWS // PARTS), "--no-progress"]
    job = threading.Thread(target=lambda: codes.append(main(argv)))
    with Client(own_cluster.scheduler_address) as observer:
        pids = observer.run(os.getpid)
        assert len(pids) == 2
        job.start()
        _wait_for(lambda: list(tmp_path.glob(".labservice-*.partial/*.parquet")), "a first part written")

        def busy_worker() -> str | None:
            for address, keys in observer.processing().items():
                if any("write_partition" in str(key) for key in keys):
                    return address
            return None

        victim = _wait_for(busy_worker, "a worker running a partition")
        os.kill(pids[victim], signal.SIGKILL)
        job.join(WAIT_SECONDS)
        assert not job.is_alive()
        assert pids[victim] not in observer.run(os.getpid).values()  # it is dead (its nanny started another)

    assert codes == [1]  # finished (some generated rows are rejected, as in one process)
    single = io.StringIO()
    with files.csv.open("rb") as handle:
        run_batch(handle, csv_out=single, options=BatchOptions(), ruleset=default_ruleset(), jobs=1)
    written = parquet_frame(out)
    assert len(written) == ROWS
    assert_same_rows(csv_frame(single.getvalue()), written, files.where)
    assert not list(tmp_path.glob(".labservice-*.partial"))
