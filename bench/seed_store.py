"""Fill a labservice database with generated CBCs the way the service stores them, for benchmarks.

Patients get `per_patient` CBCs each (bench/cbc_data.generate_cbc_frame values, some analytes missing)
at increasing collection times ending in the last 30 days; about 40 % of the gaps are shorter than the
7-day delta window, so delta checks (platelet_drop, new_cytopenia) fire. 30 % of the patients are
followed for a blood disorder: 85 % of their CBCs are abnormal; 3 % of the others' are (about 28 % in all),
so thousands of referrals stay open and not routine, as on a hospital's haematology worklist.
All CBCs are sent in collection order, in chunks of `chunk` CBCs, down the path of
POST /api/v1/interpretations: the JSON bodies are validated by the API's schema, then
`interpret_documents(docs, keep=keep_in(database, ...))` interprets them with the real engine and stores
them through the real store use case (`services.store_results.store_cbcs`), one transaction per chunk.

The worklist is also worked, as clinicians would: after each chunk, every other referral whose CBC is
more than 30 days older than the chunk's newest (by id parity) is closed (referred or dismissed) through
`change_referral`; the rest stay open as a backlog. A later CBC that needs attention opens a new one.

Usage (prints one JSON line of figures):
    python bench/seed_store.py URL [--patients 10000] [--per-patient 10] [--chunk 1000]
URL is a SQLAlchemy or postgresql:// URL; the database must exist (it is migrated to the newest schema).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cbc_data import generate_cbc_frame  # noqa: E402

from labservice.store.models import VALUE_COLUMNS  # noqa: E402

DELTA_WINDOW_DAYS = 7  # the service's default DELTA_WINDOW_DAYS
SHORT_GAP_FRACTION = 0.4  # gaps inside the delta window
#: Patients followed for a blood disorder (their CBCs mostly abnormal), and the abnormal fractions of the
#: CBCs of followed and other patients: a hospital's haematology worklist, where abnormal counts recur.
FOLLOWED_FRACTION = 0.3
FOLLOWED_ABNORMAL = 0.85
OTHER_ABNORMAL = 0.03
CLOSE_AFTER_DAYS = 30  # a referral this much older than the newest CBC stored may be closed
ACTOR = "bench/seed_store.py"


@dataclass
class SeedResult:
    url: str
    patients: int
    cbcs: int
    seconds: float
    cbcs_per_second: float
    stored: int = 0
    duplicates: int = 0
    delta_assessed: int = 0
    delta_findings: dict[str, int] = field(default_factory=dict)
    urgencies: dict[str, int] = field(default_factory=dict)  # of the stored CBCs
    referrals_closed_while_seeding: int = 0
    open_referrals: dict[str, int] = field(default_factory=dict)  # by urgency, at the end
    referrals_total: int = 0


def build_bodies(patients: int, per_patient: int, seed: int = 7, end: datetime | None = None) -> list[dict]:
    """JSON request bodies (as a client would send them), all CBCs sorted by collection time."""
    n = patients * per_patient
    rng = np.random.default_rng(seed + 1)
    followed = np.repeat(rng.random(patients) < FOLLOWED_FRACTION, per_patient)
    other = generate_cbc_frame(n, seed=seed, abnormal_fraction=OTHER_ABNORMAL)
    sick = generate_cbc_frame(n, seed=seed + 2, abnormal_fraction=FOLLOWED_ABNORMAL)
    frame = other.where(pd.Series(~followed, index=other.index), sick, axis=0)
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    # Gaps between a patient's consecutive CBCs: hours to days (inside the delta window) or weeks.
    short = rng.random((patients, per_patient - 1)) < SHORT_GAP_FRACTION
    gaps = np.where(short, rng.uniform(0.25, DELTA_WINDOW_DAYS - 0.5, short.shape), rng.uniform(8, 90, short.shape))
    offsets = np.concatenate([np.zeros((patients, 1)), np.cumsum(gaps, axis=1)], axis=1)  # days from the first
    last = end - timedelta(days=1)
    start_days = -offsets[:, -1:] - rng.uniform(0, CLOSE_AFTER_DAYS, (patients, 1))  # last CBC in the last 30 days
    days = start_days + offsets  # days relative to `last`, per patient and CBC
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    bodies = []
    for p in range(patients):
        first = p * per_patient
        sex = columns["sex"][first]
        age0 = float(columns["age_years"][first])
        for k in range(per_patient):
            row = first + k
            results = {}
            for name in VALUE_COLUMNS:
                value = columns[name][row] if name in columns else math.nan
                if not math.isnan(value):
                    results[name] = float(value)
            body: dict = {
                "patient": {
                    "id": f"BENCH-{p:06d}",
                    "sex": sex,
                    "age_years": round(age0 + (days[p, k] - days[p, 0]) / 365.25, 2),
                },
                "collected_at": (last + timedelta(days=float(days[p, k])))
                .replace(microsecond=0)
                .isoformat()
                .replace("+00:00", "Z"),
                "results": results,
            }
            if columns["fever"][row] == 1.0:
                body["skin"] = {"fever": True}
            bodies.append(body)
    bodies.sort(key=lambda body: body["collected_at"])  # the lab sends results as they come
    return bodies


def _close_stale(database, newest: datetime) -> int:
    """Close (refer or dismiss) the open referrals of even id whose CBC is over CLOSE_AFTER_DAYS older than `newest`."""
    from sqlalchemy import select

    from labservice.store.models import OPEN_STATUSES, Referral
    from labservice.store.repository import change_referral

    with database.session() as session:
        ids = session.scalars(
            select(Referral.id).where(
                Referral.status.in_(OPEN_STATUSES),
                Referral.collected_at < newest - timedelta(days=CLOSE_AFTER_DAYS),
                Referral.id % 2 == 0,
            )
        ).all()
        for referral_id in ids:
            change_referral(
                session,
                referral_id,
                "referred" if referral_id % 4 == 0 else "dismissed",
                actor=ACTOR,
                note="closed by the benchmark seeding",
                reason="not_current",
            )
    return len(ids)


def seed(
    url: str, patients: int, per_patient: int = 10, chunk: int = 1000, seed: int = 7, progress: bool = False
) -> SeedResult:
    """Migrate the database at `url` and store the generated CBCs through the service's own path."""
    from sqlalchemy import func, select

    from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA
    from labservice.core.ruleset import default_ruleset
    from labservice.services.interpret import interpret_documents
    from labservice.services.store_results import keep_in
    from labservice.store.database import Database, database_url, migrate
    from labservice.store.models import OPEN_STATUSES, Referral

    url = database_url(url, ".")
    bodies = build_bodies(patients, per_patient, seed)
    migrate(url)
    database = Database.connect(url)
    rs = default_ruleset()
    keep = keep_in(database, rs, DELTA_WINDOW_DAYS)
    result = SeedResult(url=url.split("@")[-1], patients=patients, cbcs=len(bodies), seconds=0.0, cbcs_per_second=0.0)
    started = time.perf_counter()
    for position in range(0, len(bodies), chunk):
        part = bodies[position : position + chunk]
        docs = CBC_LIST_SCHEMA.load(part)
        answers = interpret_documents(docs, ruleset=rs, indexed=True, keep=keep, raws=part)
        for answer in answers:
            stored = answer.get("stored") or {}
            result.stored += not stored.get("duplicate", True)
            result.duplicates += bool(stored.get("duplicate"))
            result.urgencies[answer["urgency"]] = result.urgencies.get(answer["urgency"], 0) + 1
            result.delta_assessed += bool((answer.get("delta") or {}).get("assessed"))
            for finding in answer["findings"]:
                if finding["code"] in ("platelet_drop", "new_cytopenia"):
                    result.delta_findings[finding["code"]] = result.delta_findings.get(finding["code"], 0) + 1
        result.referrals_closed_while_seeding += _close_stale(database, docs[-1]["collected_at"])
        if progress:
            done = position + len(part)
            print(
                f"seed_store: {done:,}/{len(bodies):,} CBCs, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    result.seconds = time.perf_counter() - started
    result.cbcs_per_second = len(bodies) / result.seconds if result.seconds else 0.0
    with database.session() as session:
        rows = session.execute(
            select(Referral.urgency, func.count()).where(Referral.status.in_(OPEN_STATUSES)).group_by(Referral.urgency)
        ).all()
        result.open_referrals = {urgency: int(count) for urgency, count in sorted(rows)}
        result.referrals_total = int(session.scalar(select(func.count()).select_from(Referral)) or 0)
    if url.startswith("postgresql"):
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum would have done by the time of reading
    database.engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--per-patient", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--progress", action="store_true", help="a line on stderr per chunk")
    args = parser.parse_args()
    result = seed(args.url, args.patients, args.per_patient, args.chunk, args.seed, progress=args.progress)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
