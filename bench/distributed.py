"""Dask benchmark: `labservice interpret` on one Parquet file of 10^6 CBCs, in one process against a local cluster.

It writes the file once (bench/cbc_data.py: about 10 % abnormal CBCs; row groups of 100,000 rows, so 10
partitions) into a temporary directory, then measures, several runs each, side by side (one of each per round,
so a change of the machine's load hits all four alike):
  1. single process: `labservice interpret FILE -o DIR` as a child process (Dask's synchronous scheduler, the
     path without --cluster): wall time with start-up, and its peak RSS (os.wait4);
  2. local cluster, end to end: `labservice interpret FILE -o DIR --cluster local:2` as a child process: wall time
     including starting the cluster (2 worker processes, 1 thread each) and stopping it;
  3. single process, warm: run_job in this process (imports and rule tables already loaded), and its CPU time;
  4. local cluster, warm: the same job through labservice.batch.distributed.job.run_job on a LocalCluster this
     script started once (2 workers), so the rate excludes the cluster's start-up; then each worker's peak RSS
     (getrusage in the worker process: its largest resident size since it started), and the CPU time of the
     workers and this process (what a run costs, whatever else the shared machine runs).
Every run's output must hold one row per CBC (exit status 1 otherwise). Rates are CBCs per second from the
median run; min and median are printed. The machine and its load average are printed with the table.
With --ids each CBC has a patient id and a collection time (a few repeated), so the job shuffles every row
on them before the duplicate check, as it does for a real export with ids and for any long file.
Usage: python bench/distributed.py [--smoke | --rows N] [--runs R] [--workers W] [--ids]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named distributed.py: its own folder must not be on the path, or `import distributed` finds it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

ROWS, SMOKE_ROWS = 1_000_000, 20_000
ROW_GROUP = 100_000


def maxrss_mb(ru_maxrss: int) -> float:
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 1024


def cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from labservice.cli import main; sys.exit(main(sys.argv[1:]))"]


def write_file(path: Path, rows: int, ids: bool = False) -> None:
    import numpy as np

    from bench.cbc_data import generate_cbc_frame

    frame = generate_cbc_frame(rows, seed=15)
    if ids:  # a patient id and a collection time per CBC (a few repeated): the job shuffles on them
        rng = np.random.default_rng(16)
        patients = rng.integers(0, rows, rows)
        days = np.where(rng.random(rows) < 0.01, 0, rng.integers(1, 3650, rows))
        frame.insert(0, "patient_id", np.char.add("MRN", patients.astype(str)).astype(object))
        frame.insert(1, "collected_at", (np.datetime64("2020-01-01T08:00") + days.astype("timedelta64[D]")).astype(str))
    frame.to_parquet(path, index=False, row_group_size=min(ROW_GROUP, max(1, rows // 10)))


def count_rows(directory: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(part).metadata.num_rows for part in directory.glob("*.parquet"))


def run_cli(argv: list[str], out: Path) -> tuple[float, float, int]:
    """(seconds, peak MB of the command's own process, exit code); the output directory is removed first."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [*cli(), "interpret", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ}
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(process.stderr.read().decode() if process.stderr else "", file=sys.stderr)
    return seconds, maxrss_mb(usage.ru_maxrss), code


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used: what a run costs whatever else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_peak_mb() -> float:
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def summary_line(name: str, rows: int, times: list[float], extra: str) -> str:
    low, mid = min(times), statistics.median(times)
    return f"| {name} | {rows:,} | {len(times)} | {low:.2f} | {mid:.2f} | {rows / mid:,.0f} | {extra} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_ROWS:,} CBCs, 1 run (CI)")
    parser.add_argument("--rows", type=int, help=f"CBCs in the file (default {ROWS:,})")
    parser.add_argument("--runs", type=int, help="runs of each measurement (default 3; --smoke 1)")
    parser.add_argument("--workers", type=int, default=2, help="local cluster worker processes (default 2)")
    parser.add_argument(
        "--ids", action="store_true", help="give each CBC a patient id and a time: the duplicate check's shuffle runs"
    )
    args = parser.parse_args()
    rows = args.rows or (SMOKE_ROWS if args.smoke else ROWS)
    runs = args.runs or (1 if args.smoke else 3)
    from labservice.batch.distributed import missing_extra

    problem = missing_extra()
    if problem:
        print(f"bench/distributed.py: {problem}", file=sys.stderr)
        return 1
    from distributed import Client

    from labservice.batch import BatchOptions
    from labservice.batch.distributed.cluster import start_local_cluster
    from labservice.batch.distributed.job import run_job
    from labservice.core.ruleset import default_ruleset

    failures = 0
    with tempfile.TemporaryDirectory(prefix="labservice-bench-dask-") as folder:
        work = Path(folder)
        data = work / "cbcs.parquet"
        started = time.perf_counter()
        write_file(data, rows, args.ids)
        size_mb = data.stat().st_size / 1e6
        print(f"wrote {rows:,} CBCs to Parquet ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")
        partition = str(ROW_GROUP if rows >= 10 * ROW_GROUP else max(1, rows // 10))
        single, single_peak, cluster_cli, single_warm, warm = [], [], [], [], []
        ruleset = default_ruleset()

        single_cpu: list[float] = []
        cluster_cpu: list[float] = []

        def in_this_process(client, name: str) -> float:
            """Wall seconds of one run; its CPU seconds (this process, and every worker's) go to the lists above."""
            out = work / name
            shutil.rmtree(out, ignore_errors=True)
            cpu = cpu_seconds()
            workers_cpu = sum(client.run(cpu_seconds).values()) if client is not None else 0.0
            started = time.perf_counter()
            summary = run_job(
                str(data), out, options=BatchOptions(), ruleset=ruleset, client=client, partition_rows=int(partition)
            )
            seconds = time.perf_counter() - started
            used = cpu_seconds() - cpu
            if client is None:
                single_cpu.append(used)
            else:
                cluster_cpu.append(used + sum(client.run(cpu_seconds).values()) - workers_cpu)
            nonlocal_failures.append(summary.rows_out != rows)
            return seconds

        nonlocal_failures: list[bool] = []
        started = time.perf_counter()
        with start_local_cluster(args.workers) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - started
            # Side by side: one of each per round, so a change of load hits all four alike.
            for _ in range(runs):
                argv = [str(data), "-o", str(work / "single"), "--partition-rows", partition]
                seconds, peak, code = run_cli(argv, work / "single")
                failures += code not in (0, 1) or count_rows(work / "single") != rows
                single.append(seconds)
                single_peak.append(peak)
                argv = [str(data), "-o", str(work / "local"), "--partition-rows", partition, "--no-progress"]
                seconds, _, code = run_cli([*argv, "--cluster", f"local:{args.workers}"], work / "local")
                failures += code not in (0, 1) or count_rows(work / "local") != rows
                cluster_cli.append(seconds)
                single_warm.append(in_this_process(None, "single-warm"))
                warm.append(in_this_process(client, "warm"))
            peaks = sorted(client.run(worker_peak_mb).values())
        failures += sum(nonlocal_failures)
        output_mb = sum(part.stat().st_size for part in (work / "warm").glob("*.parquet")) / 1e6
        load = os.getloadavg()
        print(
            f"\nmachine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
            f"(1 / 5 / 15 min) at the end; file: {rows:,} CBCs, {size_mb:.1f} MB, partitions of "
            f"{int(partition):,} rows; output {output_mb:.1f} MB of Parquet parts"
        )
        print("\n| path | CBCs | runs | min s | median s | CBCs/s (median) | notes |\n|---|---|---|---|---|---|---|")
        print(
            summary_line(
                "single process: `labservice interpret FILE -o DIR`",
                rows,
                single,
                f"start-up included; peak RSS {statistics.median(single_peak):,.0f} MB",
            )
        )
        print(
            summary_line(
                f"`--cluster local:{args.workers}`, end to end",
                rows,
                cluster_cli,
                "starting and stopping the cluster included",
            )
        )
        print(
            summary_line(
                "single process, warm (run_job in this process)",
                rows,
                single_warm,
                f"no start-up; CPU {statistics.median(single_cpu):.1f} s (median)",
            )
        )
        print(
            summary_line(
                f"local cluster ({args.workers} workers), warm",
                rows,
                warm,
                f"cluster start-up ({startup:.1f} s) not included; CPU {statistics.median(cluster_cpu):.1f} s (median, "
                "workers and client); peak RSS per worker " + ", ".join(f"{p:,.0f}" for p in peaks) + " MB",
            )
        )
        ratio = statistics.median(single_warm) / statistics.median(warm)
        print(f"\nwarm cluster / warm single process speed: {ratio:.2f} x (median runs, side by side in this run)")
    if failures:
        print(f"bench/distributed.py: {failures} runs did not write one row per CBC", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
