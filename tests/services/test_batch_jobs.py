"""A batch job's progress (labservice.services.batch_jobs): the part of the file done, not the bytes read ahead.

The reader reads the file in 1 MiB blocks, so a small file is all read after its first chunk; the progress a job
reports for a wide file is the lines done (header, rows out, blank lines) times the file's average line.
"""

from __future__ import annotations

from labservice.batch.summary import BatchSummary
from labservice.services.batch_jobs import _bytes_done


def test_a_wide_files_progress_is_the_lines_done(tmp_path):
    path = tmp_path / "upload.csv"
    lines = ["MRN,PLTS"] + [f"P{i:03d},{100 + i}" for i in range(99)]  # 100 lines of 9 bytes with their end
    path.write_bytes(("\n".join(lines) + "\n").encode())
    assert path.stat().st_size == 900
    done = _bytes_done(path)
    summary = BatchSummary(shape="wide", rows_out=9)
    assert done(summary, 900) == 90  # the header and 9 rows: 10 lines of 9 bytes, though all 900 were read
    assert done(BatchSummary(shape="wide", rows_out=99), 900) == 900
    assert done(BatchSummary(shape="wide", rows_out=50), 300) == 300  # never more than the bytes read


def test_a_long_files_progress_is_the_bytes_read(tmp_path):
    path = tmp_path / "upload.csv"
    path.write_bytes(b"id,item,value\n" + b"S1,51265,45\n" * 10)
    assert _bytes_done(path)(BatchSummary(shape="long", rows_out=1), 134) == 134


def test_an_upload_gone_is_reported_by_the_bytes_read(tmp_path):
    assert _bytes_done(tmp_path / "gone.csv")(BatchSummary(shape="wide", rows_out=1), 77) == 77
