"""Batch page benchmark: a batch's rows a page at a time (labservice/batch/result_pages.py), the dashboard's batch page.

For each size (10^5 and 10^6 CBCs; --smoke: 10^3 and 10^4) it writes one wide CSV (bench/csv_data.py: about 10 %
abnormal, about 1 % bad lines), makes its result.json with run_batch (as a batch job does), and measures, --runs
times each (min and median of the runs):
  1. the index pass (`index_results`): one read of result.json, made once per batch on its first view;
  2. loading the index kept beside the results (`result_index` when pages.npz is there): every later view;
  3. reading one page of 50 rows: the first, the middle and the last page, and the last page of rejected rows.
Prints a table; asserts nothing. Usage: python bench/result_pages.py [--smoke] [--runs 5]
Target: a page (index loaded + 50 rows read) <= 20 ms at 10^6 rows; the index pass a few seconds at 10^6 rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from csv_data import write_wide_csv  # noqa: E402

from labservice.batch import BatchOptions, run_batch  # noqa: E402
from labservice.batch.result_pages import INDEX_NAME, index_results, rejected_page, result_index, rows_page  # noqa: E402

SIZES = (100_000, 1_000_000)
SMOKE_SIZES = (1_000, 10_000)
TARGET_PAGE_MS = 20.0


def timed(action: Callable[[], object], runs: int) -> tuple[float, float]:
    """(min, median) milliseconds of `runs` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def measure(folder: Path, n: int, runs: int) -> str:
    """One size: its table row."""
    source = folder / f"cbc-{n}.csv"
    write_wide_csv(source, n)
    batch = folder / f"batch-{n}"
    batch.mkdir()
    json_path = batch / "result.json"
    with source.open("rb") as data, json_path.open("w", encoding="utf-8", newline="") as out:
        run_batch(data, json_out=out, options=BatchOptions(), jobs=2)
    index_ms = timed(lambda: index_results(json_path), runs)
    result_index(json_path)  # made and kept once, as the first view does
    assert (batch / INDEX_NAME).is_file()
    load_ms = timed(lambda: result_index(json_path), runs)
    index = result_index(json_path)
    pages, rejected_pages = index.pages(), index.pages(rejected=True)
    first = timed(lambda: rows_page(json_path, index, 1), runs)
    middle = timed(lambda: rows_page(json_path, index, pages // 2), runs)
    last = timed(lambda: rows_page(json_path, index, pages), runs)
    last_rejected = timed(lambda: rejected_page(json_path, index, rejected_pages), runs)
    worst_page = load_ms[1] + max(first[1], middle[1], last[1], last_rejected[1])
    megabytes = json_path.stat().st_size / 1e6
    cells = [f"{low:.2f} / {median:.2f}" for low, median in (load_ms, first, middle, last, last_rejected)]
    return (
        f"| {n:,} | {megabytes:,.0f} | {len(index.rejected):,} | {index_ms[0]:,.0f} / {index_ms[1]:,.0f} | "
        + " | ".join(cells)
        + f" | {'yes' if worst_page <= TARGET_PAGE_MS else 'no'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = SMOKE_SIZES if args.smoke else SIZES
    print(
        f"| rows | result.json MB | rejected | index pass ms (min / median) | index load ms | first page ms "
        f"| middle page ms | last page ms | last rejected page ms | page ≤ {TARGET_PAGE_MS:g} ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="labservice-bench-pages-") as folder:
        for n in sizes:
            print(measure(Path(folder), n, args.runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
