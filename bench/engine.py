"""Engine benchmark: latency for one CBC and throughput for 10^3, 10^5 and 10^6 CBCs.

Prints a table. Each table size runs in its own process so its peak RSS is its own.
Usage: python bench/engine.py [--sizes 1000,100000,1000000] [--calls 2000]
Targets (2-core machine): one CBC <= 1 ms median; 10^6 CBCs <= 5 s and <= 2 GB peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def single(calls: int) -> dict:
    from cbc_data import EXAMPLE_CBC

    from labservice.adapters.json_cbc import parse_documents
    from labservice.core.interpret import interpret_cbc_table
    from labservice.core.render import render_interpretations
    from labservice.core.ruleset import default_ruleset

    rs = default_ruleset()
    engine, full = [], []
    for _ in range(200):  # warm-up
        render_interpretations(
            interpret_cbc_table(parse_documents([EXAMPLE_CBC], rs, indexed=False).columns, ruleset=rs)
        )
    for _ in range(calls):
        cols = parse_documents([EXAMPLE_CBC], rs, indexed=False).columns
        t0 = time.perf_counter()
        result = interpret_cbc_table(cols, ruleset=rs)
        engine.append(time.perf_counter() - t0)
    for _ in range(calls):
        t0 = time.perf_counter()
        parsed = parse_documents([EXAMPLE_CBC], rs, indexed=False)
        result = interpret_cbc_table(parsed.columns, ruleset=rs)
        render_interpretations(result, parsed.patient_ids, parsed.reported)
        full.append(time.perf_counter() - t0)
    return {
        "engine_median_ms": statistics.median(engine) * 1e3,
        "engine_p99_ms": percentile(engine, 0.99) * 1e3,
        "full_median_ms": statistics.median(full) * 1e3,
        "full_p99_ms": percentile(full, 0.99) * 1e3,
    }


def table_run(n: int) -> dict:
    """In a child process: generate n CBCs, interpret them, report time and peak RSS."""
    from cbc_data import generate_cbc_frame, generate_lesions

    from labservice.core.columns_out import interpretation_frame
    from labservice.core.interpret import interpret_cbc_table
    from labservice.core.ruleset import default_ruleset

    rs = default_ruleset()
    interpret_cbc_table(generate_cbc_frame(10), ruleset=rs)  # load tables, warm caches
    frame = generate_cbc_frame(n)
    lesions = generate_lesions(n)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = interpret_cbc_table(frame, lesions, ruleset=rs)
    urgency = result.urgency_names()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    interpretation_frame(result)
    frame_seconds = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "seconds": seconds,
        "frame_seconds": frame_seconds,
        "rows_per_s": n / seconds,
        "peak_rss_mb": peak,
        "input_rss_mb": rss_before,
        "urgent_or_worse": int((urgency == "urgent").sum() + (urgency == "immediate").sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(table_run(args.child)))
        return
    one = single(args.calls)
    print(f"Engine, one CBC ({args.calls} calls)")
    print("| step | median ms | p99 ms |\n|---|---|---|")
    print(f"| engine (interpret_cbc_table) | {one['engine_median_ms']:.3f} | {one['engine_p99_ms']:.3f} |")
    print(f"| parse + engine + render | {one['full_median_ms']:.3f} | {one['full_p99_ms']:.3f} |")
    print()
    print("Engine, tables (one process per size; peak RSS includes the generated input)")
    print("| CBCs | engine s | CBCs/s | columnar output s | input RSS MB | peak RSS MB | urgent+immediate |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['n']:,} | {r['seconds']:.3f} | {r['rows_per_s']:,.0f} | {r['frame_seconds']:.3f} | "
            f"{r['input_rss_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['urgent_or_worse']:,} |"
        )


if __name__ == "__main__":
    main()
