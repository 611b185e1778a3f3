"""Storing a batch chunk: the time to store N interpreted CBCs with patient ids in one transaction (patients found
or added, duplicates looked up, the chunk's patients' history fetched, delta checks, results, interpretations and
referrals), on SQLite and on PostgreSQL (issue 12 item 1-2).

Three chunks on a fresh database: the first (no history), a second of the same patients a day later (each CBC
compared with the patient's previous one), then the second chunk again (a job restarted after its commit: every
row is found stored and nothing is stored twice). Interpreting the rows is not timed.

Usage: python bench/store_chunk.py [--rows 10000] [--patients 2000] [--postgres URL] [--runs 1]
Uses labservice.services.store_results.store_chunk when it exists, else store_cbcs in one transaction (so the same
script measures older code: PYTHONPATH=<older tree> python bench/store_chunk.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA  # noqa: E402
from labservice.adapters.json_cbc import parse_documents  # noqa: E402
from labservice.core.interpret import interpret_cbc_table  # noqa: E402
from labservice.core.render import render_interpretations  # noqa: E402
from labservice.core.ruleset import default_ruleset  # noqa: E402
from labservice.services import store_results  # noqa: E402
from labservice.store.database import Database, migrate  # noqa: E402
from labservice.store.repository import add_batch  # noqa: E402


def items_for(rows: int, patients: int, day: int, seed: int) -> list:
    """`rows` interpreted CBCs of `patients` patients collected on `day` (about 10 % with low counts)."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 6, 1, 8, tzinfo=UTC) + timedelta(days=day)
    docs = []
    for n in range(rows):
        low = rng.random() < 0.1
        docs.append(
            {
                "patient": {"id": f"CHUNK-{n % patients}", "sex": "female" if n % 2 else "male", "age_years": 50},
                "collected_at": (start + timedelta(minutes=n // patients)).isoformat(),
                "results": {
                    "platelets": float(rng.uniform(20, 90) if low else rng.uniform(160, 380)),
                    "hemoglobin": float(rng.uniform(7, 10) if low else rng.uniform(12.5, 16)),
                    "wbc": float(rng.uniform(3.5, 10)),
                    "neutrophils": float(rng.uniform(0.3, 1.2) if low else rng.uniform(2, 6)),
                },
            }
        )
    rs = default_ruleset()
    raws, docs = docs, CBC_LIST_SCHEMA.load(docs)
    parsed = parse_documents(docs, rs, indexed=True)
    result = interpret_cbc_table(parsed.columns, ruleset=rs)
    answers = render_interpretations(result, parsed.patient_ids, parsed.reported)
    return [
        store_results.to_store(doc, raws[i], parsed.columns, i, str(parsed.patient_ids[i]), answers[i])
        for i, doc in enumerate(docs)
    ]


def store(database: Database, items: list, batch_id: str) -> tuple[float, int]:
    """Seconds to store the chunk, and the rows stored now."""
    rs = default_ruleset()
    began = time.perf_counter()
    if hasattr(store_results, "store_chunk"):
        counts = store_results.store_chunk(database, items, batch_id=batch_id, rs=rs, window_days=7)
        return time.perf_counter() - began, counts.stored
    with database.session() as session:
        stored = store_results.store_cbcs(
            session, items, source="batch", rs=rs, window=timedelta(days=7), batch_id=batch_id
        )
    return time.perf_counter() - began, sum(1 for s in stored if not s.duplicate)


def one_run(url: str, rows: int, patients: int) -> list[tuple[str, float, int]]:
    migrate(url)
    database = Database.connect(url)
    batch_id = uuid.uuid4().hex
    with database.session() as session:
        add_batch(session, batch_id, "0" * 64, "bench.csv")
    first, second = items_for(rows, patients, 0, 1), items_for(rows, patients, 1, 2)
    out = []
    for name, items in (
        ("first chunk (no history)", first),
        ("second chunk (history)", second),
        ("second chunk again (restart)", second),
    ):
        seconds, stored = store(database, items, batch_id)
        out.append((name, seconds, stored))
    database.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--postgres", help="a PostgreSQL server URL: a new database there per run")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, int]]] = {}
    for _ in range(args.runs):
        if args.postgres:
            import psycopg

            name = f"storing_chunk_{uuid.uuid4().hex[:8]}"
            admin = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            try:
                url = "postgresql+psycopg://" + admin.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
                timings = one_run(url, args.rows, args.patients)
            finally:
                with psycopg.connect(admin, autocommit=True) as connection:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            with tempfile.TemporaryDirectory() as folder:
                timings = one_run(f"sqlite:///{folder}/chunk.sqlite", args.rows, args.patients)
        for name, seconds, stored in timings:
            results.setdefault(name, []).append((seconds, stored))
    database = "PostgreSQL" if args.postgres else "SQLite"
    code = "store_chunk" if hasattr(store_results, "store_chunk") else "store_cbcs (older code)"
    print(f"{database}, {args.rows:,} rows of {args.patients:,} patients per chunk, {code}, {args.runs} runs")
    print("| chunk | s (min / median) | rows/s (median) | rows stored |\n|---|---|---|---|")
    for name, values in results.items():
        times = [seconds for seconds, _ in values]
        median = statistics.median(times)
        print(f"| {name} | {min(times):.2f} / {median:.2f} | {args.rows / median:,.0f} | {values[-1][1]:,} |")


if __name__ == "__main__":
    main()
