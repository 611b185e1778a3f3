"""CSV batch benchmark: `labservice interpret` on wide LIS-style CSV files, against pandas.read_csv as the floor.

For each size (10^5 and 10^6 CBCs; --smoke: 10^3 and 10^4) it writes one wide CSV (bench/csv_data.py:
about 10 % abnormal CBCs, about 1 % bad lines) into a temporary directory and measures, in the same run:
  1. the floor: pandas.read_csv on the same file (on_bad_lines="skip", the least that gets through the
     lines with too many fields), in a fresh process: the read_csv call's wall time, and the process's peak RSS;
  2. end to end: `labservice interpret INPUT -o OUTPUT.csv --no-progress` as a child process (its default jobs:
     2 workers, or 1 when the load average leaves no core free; a comment line says which): wall time
     (start-up included), exit code (1 expected: some lines are rejected) and its peak memory, two ways:
     the largest single process of its tree (os.wait4: the child's own rusage, which covers its reaped
     worker processes, not the maximum over all children so far), and the whole tree (the command and its
     worker processes), as the sum of their PSS (shared copy-on-write pages counted once) sampled every
     100 ms from /proc (the CLI only: the floor is one process). The peak target applies to the larger of the two;
  3. the output's row count, which must equal the input's CBC lines (exit status 1 when it does not,
     or when the CLI is missing or exits otherwise than expected), and the rows the CLI rejected
     (from its --summary JSON).
The CPU columns (user + system, the CLI's worker processes included) are steadier than wall time on a
loaded machine; the target is the wall-time ratio.
This process never imports pandas and writes no file itself: on Linux a child's peak RSS starts at its
parent's RSS when it is forked, so a big parent would inflate every child's figure.
Prints a table. Usage: python bench/batch.py [--smoke | --rows N] [--upload-only | --no-upload]
Targets (2-core machine): end to end <= 3 x the read_csv floor, and <= 1536 MB peak RSS.

Then (bench/batch_upload.py) the same kind of file with patient ids uploaded over HTTP as a batch job, timed
from upload to done on SQLite and PostgreSQL (10^6 rows; --smoke: 2,000): target <= 300 s.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIZES = (100_000, 1_000_000)
SMOKE_SIZES = (1_000, 10_000)
UPLOAD_SIZES = (1_000_000,)
SMOKE_UPLOAD_SIZES = (2_000,)
TARGET_RATIO = 3.0
TARGET_PEAK_MB = 1536.0
SAMPLE_SECONDS = 0.1
TREE_EVERY = 5  # samples between scans of /proc for the tree (a scan costs about 2 ms, a PSS read 0.3 ms)
PROC = Path("/proc")
#: Bad lines the CLI must reject (censored values like `<5` may be interpreted); any of them makes the exit 1.
REJECTED_KINDS = ("non_numeric", "implausible", "too_many_fields")
TABLE_HEADER = (
    "| CBCs | file MB | read_csv floor s | read_csv process s | end-to-end s | ratio | peak MB read_csv "
    "| peak MB CLI (all processes) | largest CLI process MB | exit | rows out | rejected | ratio ≤ 3 | peak ≤ 1536 MB "
    "| CPU s read_csv | CPU s CLI | CPU ratio |"
    "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class ChildRun:
    """One finished child process: wall time, exit code, its own peak RSS and its output files."""

    seconds: float
    exit_code: int
    peak_mb: float  # the largest single process (wait4)
    cpu_s: float  # user + system CPU of the process and the worker processes it waited for (wait4)
    tree_peak_mb: float | None  # sampled PSS sum over the process tree; None without /proc
    stdout: Path
    stderr: Path

    @property
    def total_peak_mb(self) -> float:
        return max(self.peak_mb, self.tree_peak_mb or 0.0)

    def tail(self, lines: int = 15) -> str:
        text = self.stderr.read_text(errors="replace") + self.stdout.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class SizeResult:
    rows: int
    file_mb: float
    floor_s: float
    floor_cpu_s: float
    floor_process_s: float
    floor_peak_mb: float
    cli: ChildRun | None
    rows_out: int | None
    rejected: int | None
    expected_exit: int

    @property
    def ratio(self) -> float | None:
        return self.cli.seconds / self.floor_s if self.cli else None

    @property
    def cpu_ratio(self) -> float | None:
        return self.cli.cpu_s / self.floor_cpu_s if self.cli else None


def maxrss_mb(ru_maxrss: int) -> float:
    """ru_maxrss in MB: kilobytes on Linux, bytes on macOS."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 1024


def process_tree(root: int) -> list[int]:
    """root and its descendants, from the parent pid field of /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # fields after "(comm)": state, ppid, ...
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def pss_mb(pid: int) -> float:
    """A process's proportional set size in MB (0 when it is gone)."""
    try:
        with open(PROC / str(pid) / "smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


class TreeMemory(threading.Thread):
    """Samples the PSS sum of a process tree until stopped; keeps the peak."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_mb = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        tree: list[int] = []
        for sample in itertools.count():
            if sample % TREE_EVERY == 0:
                tree = process_tree(self.root)
            self.peak_mb = max(self.peak_mb, sum(pss_mb(pid) for pid in tree))
            if self.stopped.wait(SAMPLE_SECONDS):
                return


def run_child(argv: list[str], logs: Path, name: str, sample_tree: bool = False) -> ChildRun:
    """Run argv to completion with stdout/stderr in files; wait4 gives this child's own rusage.

    sample_tree: also sample the PSS sum of the child's process tree (costs the child a little time).
    """
    stdout, stderr = logs / f"{name}.out", logs / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        t0 = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
        sampler = TreeMemory(process.pid) if sample_tree and (PROC / "self" / "smaps_rollup").exists() else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - t0
    if sampler:
        sampler.stopped.set()
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen
    tree_peak = sampler.peak_mb if sampler else None
    cpu = usage.ru_utime + usage.ru_stime
    return ChildRun(seconds, process.returncode, maxrss_mb(usage.ru_maxrss), cpu, tree_peak, stdout, stderr)


def cli_command() -> list[str]:
    """The venv's `labservice` console script, else `python -m labservice.cli`."""
    script = Path(sys.executable).parent / "labservice"
    return [str(script)] if script.exists() else [sys.executable, "-m", "labservice.cli"]


def cli_available(logs: Path) -> bool:
    """`labservice interpret --help` exits 0."""
    try:
        return run_child([*cli_command(), "interpret", "--help"], logs, "help").exit_code == 0
    except OSError:
        return False


def write_csv_child(path: str, n: int) -> None:
    """In a child process: write the benchmark CSV of n CBCs; print what was written as JSON."""
    from csv_data import write_wide_csv

    facts = write_wide_csv(Path(path), n)
    print(json.dumps({"rows": facts.rows, "megabytes": facts.megabytes, "bad": facts.bad}))


def read_csv_child(path: str) -> None:
    """In a child process: time pandas.read_csv alone on path; print JSON."""
    import pandas as pd

    t0, cpu0 = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path, on_bad_lines="skip")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": len(frame)}))


def count_output_rows(path: Path) -> int:
    """Data rows of the CLI's output CSV, streamed (quoted line breaks in texts count once)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def child_json(run: ChildRun, what: str) -> dict:
    """The JSON line a helper child printed last; exits when the child failed."""
    if run.exit_code != 0:
        raise SystemExit(f"{what} failed (exit {run.exit_code}):\n{run.tail()}")
    return json.loads(run.stdout.read_text().strip().splitlines()[-1])


def jobs_note() -> str:
    """How many jobs the CLI chooses now (labservice.cli.default_jobs: 1 when the load leaves no core free)."""
    from labservice.cli import default_jobs

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"load average {load:.1f} at the start of the CLI run: it ran with {default_jobs()} job(s)"


def run_cli(path: Path, workdir: Path, n: int) -> tuple[ChildRun, int | None, int | None]:
    """`labservice interpret` on path: the run, the output's row count and the rows it rejected."""
    output, summary = workdir / f"out_{n}.csv", workdir / f"summary_{n}.json"
    argv = [*cli_command(), "interpret", str(path), "-o", str(output), "--no-progress", "--summary", str(summary)]
    print(f"<!-- {n:,} CBCs: {jobs_note()} -->", flush=True)
    cli = run_child(argv, workdir, f"cli_{n}", sample_tree=True)
    rows_out = count_output_rows(output) if output.exists() else None
    rejected = json.loads(summary.read_text())["rejected"] if summary.exists() else None
    return cli, rows_out, rejected


def measure(n: int, workdir: Path, with_cli: bool) -> SizeResult:
    """Write the file, then time the read_csv floor and the CLI on it, each in its own child."""
    path = workdir / f"cbc_{n}.csv"
    me = [sys.executable, __file__]
    facts = child_json(run_child([*me, "--write-csv", str(path), "--rows", str(n)], workdir, f"write_{n}"), "writing")
    floor = run_child([*me, "--read-csv", str(path)], workdir, f"floor_{n}")
    floor_facts = child_json(floor, "read_csv floor")
    floor_s, floor_cpu_s = floor_facts["seconds"], floor_facts["cpu_seconds"]
    cli, rows_out, rejected = run_cli(path, workdir, n) if with_cli else (None, None, None)
    expected_exit = 1 if sum(facts["bad"][kind] for kind in REJECTED_KINDS) else 0
    return SizeResult(
        facts["rows"],
        facts["megabytes"],
        floor_s,
        floor_cpu_s,
        floor.seconds,
        floor.peak_mb,
        cli,
        rows_out,
        rejected,
        expected_exit,
    )


def met(ok: bool) -> str:
    return "met" if ok else "missed"


def table_row(r: SizeResult) -> str:
    floor = f"| {r.rows:,} | {r.file_mb:.1f} | {r.floor_s:.3f} | {r.floor_process_s:.2f} "
    if r.cli is None or r.ratio is None:
        return floor + f"| – | – | {r.floor_peak_mb:.0f} | – | – | – | – | – | – | – | {r.floor_cpu_s:.2f} | – | – |"
    rows_out = "–" if r.rows_out is None else f"{r.rows_out:,}"
    rejected = "–" if r.rejected is None else f"{r.rejected:,}"
    tree = "–" if r.cli.tree_peak_mb is None else f"{r.cli.tree_peak_mb:.0f}"
    return floor + (
        f"| {r.cli.seconds:.2f} | {r.ratio:.1f} | {r.floor_peak_mb:.0f} | {tree} | {r.cli.peak_mb:.0f} "
        f"| {r.cli.exit_code} | {rows_out} | {rejected} | {met(r.ratio <= TARGET_RATIO)} "
        f"| {met(r.cli.total_peak_mb <= TARGET_PEAK_MB)} "
        f"| {r.floor_cpu_s:.2f} | {r.cli.cpu_s:.2f} | {r.cpu_ratio:.1f} |"
    )


def problems(r: SizeResult) -> list[str]:
    """What makes the run fail: an unexpected CLI exit code, or rows lost or added."""
    if r.cli is None:
        return []
    found = []
    if r.cli.exit_code != r.expected_exit:
        found.append(f"{r.rows:,} CBCs: CLI exit {r.cli.exit_code}, expected {r.expected_exit}:\n{r.cli.tail()}")
    if r.rows_out != r.rows:
        found.append(f"{r.rows:,} CBCs: {r.rows_out} rows out for {r.rows:,} in; the CLI said:\n{r.cli.tail()}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--smoke", action="store_true", help="tiny sizes (10^3 and 10^4), as CI runs it")
    sizes.add_argument("--rows", type=int, help="one custom size")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--upload-only", action="store_true", help="only the batch upload job (bench/batch_upload.py)")
    parts.add_argument("--no-upload", action="store_true", help="only the CSV command against read_csv")
    parser.add_argument(
        "--database",
        choices=("SQLite", "PostgreSQL"),
        action="append",
        help="the upload on this database only (repeat for both; default: both)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="give an upload up this long (default 900: 3 x the 300 s target)",
    )
    parser.add_argument("--write-csv", help=argparse.SUPPRESS)
    parser.add_argument("--read-csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_csv:
        write_csv_child(args.write_csv, args.rows)
        return 0
    if args.read_csv:
        read_csv_child(args.read_csv)
        return 0
    chosen = (args.rows,) if args.rows else SMOKE_SIZES if args.smoke else SIZES
    failures: list[str] = []
    if not args.upload_only:
        failures += run_cli_table(chosen)
    if not args.no_upload:
        from batch_upload import run as run_upload

        uploads = (args.rows,) if args.rows else SMOKE_UPLOAD_SIZES if args.smoke else UPLOAD_SIZES
        databases = tuple(args.database) if args.database else ("SQLite", "PostgreSQL")
        failures += run_upload(uploads, write_csv_in_child, databases=databases, max_seconds=args.max_seconds)
    for failure in failures:
        print(f"bench/batch.py: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def write_csv_in_child(path: Path, rows: int) -> None:
    """The file written by a child process (this one stays small: see the docstring)."""
    subprocess.run(
        [sys.executable, __file__, "--write-csv", str(path), "--rows", str(rows)], check=True, stdout=subprocess.DEVNULL
    )


def run_cli_table(chosen: tuple[int, ...]) -> list[str]:
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labservice-bench-batch-") as tmp:
        workdir = Path(tmp)
        with_cli = cli_available(workdir)
        print("CSV batch: labservice interpret vs pandas.read_csv on the same wide CSV (about 1 % bad lines)")
        if not with_cli:
            failures.append(f"CLI not available: `{' '.join(cli_command())} interpret --help` failed")
            print(failures[-1] + "; measuring the floor only")
        print(TABLE_HEADER)
        for n in chosen:
            result = measure(n, workdir, with_cli)
            print(table_row(result), flush=True)
            failures += problems(result)
    return failures


if __name__ == "__main__":
    sys.exit(main())
