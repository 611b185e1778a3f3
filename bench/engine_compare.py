"""One-CBC engine latency of this checkout beside other checkouts, measured side by side in one run.

Each round runs `bench/engine.py --sizes "" --calls N` once per checkout, in turn (a fresh process each, reading
that checkout's own reference_ranges/), so a busy machine slows every checkout alike. Prints, per checkout, the
min and median over the rounds of the engine median and the parse + engine + render median, and each checkout's
ratio to the first. Usage:

    git worktree add /tmp/base <commit>   # or: git archive <commit> | tar -x -C /tmp/base
    python bench/engine_compare.py /tmp/base . --rounds 5 --calls 1000
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROW = re.compile(r"^\| (engine \(interpret_cbc_table\)|parse \+ engine \+ render) \| ([0-9.]+) \|")


def one_run(root: Path, calls: int) -> dict[str, float]:
    env = {**os.environ, "LABSERVICE_REFERENCE_RANGES": str(root / "reference_ranges")}
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "engine.py"), "--sizes", "", "--calls", str(calls)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    found = {match.group(1): float(match.group(2)) for line in out.splitlines() if (match := ROW.match(line))}
    return {"engine": found["engine (interpret_cbc_table)"], "full": found["parse + engine + render"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", type=Path, help="checkout directories; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    roots = [path.resolve() for path in args.checkouts]
    runs: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            runs[root].append(one_run(root, args.calls))
    print(f"One CBC, {args.rounds} rounds x {args.calls} calls, checkouts in turn (medians of each run, ms)")
    print("| checkout | engine min | engine median | ratio | parse+engine+render min | median | ratio |")
    print("|---|---|---|---|---|---|---|")
    base = {key: statistics.median(r[key] for r in runs[roots[0]]) for key in ("engine", "full")}
    for root in roots:
        engine = [r["engine"] for r in runs[root]]
        full = [r["full"] for r in runs[root]]
        print(
            f"| {root} | {min(engine):.3f} | {statistics.median(engine):.3f} | "
            f"{statistics.median(engine) / base['engine']:.2f} | {min(full):.3f} | {statistics.median(full):.3f} | "
            f"{statistics.median(full) / base['full']:.2f} |"
        )


if __name__ == "__main__":
    main()
