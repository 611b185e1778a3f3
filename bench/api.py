"""HTTP benchmark: POST /api/v1/interpretations under gunicorn (2 workers) on loopback, against
the trivial GET /healthz on the same server as the ceiling, measured in the same run.

Then the storing request against its floor (issue 12 item 2): the real storing POST /api/v1/interpretations
(a CBC with a patient id and a new collection time, so it is stored with its delta check, referral and audit
row) and bench/floor_app.py (plain Flask + SQLAlchemy Core: one indexed SELECT, three INSERTs, one commit, plus
this project's validation, parsing, engine and rendering), each under its own gunicorn (2 sync workers, a
throw-away database, rate limits off as in bench/load.py), driven alternately by the same closed-loop clients
with distinct CBCs. The cost of a request is the workers' CPU time (from /proc) per answered request; the ratio
is storing / floor, per run, printed with its min and median over the runs.

Usage: python bench/api.py [--seconds 10] [--clients 4] [--storing-runs 3] [--storing-seconds 5]
                           [--only-storing] [--postgres URL]
Targets: interpretations at >= 50 % of the ceiling's requests/s; storing within 2x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cbc_data import EXAMPLE_CBC as ONE_CBC  # noqa: E402
from credentials import bearer, create_api_key  # noqa: E402
from loadgen import build_request, run_load  # noqa: E402

from labservice.store.database import migrate  # noqa: E402

NORMAL_CBC = {
    "patient": {"sex": "male", "age_years": 52},
    "results": {
        "platelets": 250,
        "wbc": 6.1,
        "neutrophils": 3.5,
        "lymphocytes": 1.9,
        "hemoglobin": 14.6,
        "hematocrit": 44,
        "rbc": 4.9,
        "mcv": 90,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def worker_cpu_seconds(master: int) -> float:
    """User + system CPU seconds of the gunicorn master's child processes (its workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def storing_cbc(run: int, n: int, patients: int, start: datetime) -> dict:
    """The n-th CBC of a run: patient n % patients, a day after that patient's previous one (so from the second
    on each is compared with a previous CBC in the 7-day window)."""
    return {
        "patient": {"id": f"BENCH-{run}-{n % patients}", "sex": "female", "age_years": 40},
        "collected_at": (start + timedelta(hours=n // patients)).isoformat().replace("+00:00", "Z"),
        "results": {"platelets": 250 - 20 * ((n // patients) % 8), "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


@contextmanager
def serve(app_module: str, env: dict[str, str], workers: int, cwd: Path):
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            app_module,
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    try:
        wait_ready(port, timeout=60)
        yield server, port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def databases(postgres: str | None, folder: Path):
    """Two throw-away databases (real, floor): SQLite files, or new PostgreSQL databases on `postgres`."""
    if not postgres:
        yield f"sqlite:///{folder / 'real.sqlite'}", f"sqlite:///{folder / 'floor.sqlite'}"
        return
    import psycopg

    names = [f"storing_bench_{uuid.uuid4().hex[:8]}_{kind}" for kind in ("real", "floor")]
    admin = postgres.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    base = postgres.rsplit("/", 1)[0]
    try:
        yield tuple(f"{base}/{name}" for name in names)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_floor_patients(url: str, tags: list[int], patients: int) -> None:
    """The floor's patients, added beforehand: its requests are then one SELECT and three INSERTs each (and two
    workers never race to add the same new patient)."""
    from sqlalchemy import insert

    from labservice.store.database import Database
    from labservice.store.models import Patient

    database = Database.connect(url)
    now = datetime.now(UTC)
    with database.session() as session:
        session.execute(
            insert(Patient),
            [{"external_id": f"BENCH-{tag}-{n}", "created_at": now} for tag in tags for n in range(patients)],
        )
    database.engine.dispose()


def storing_against_floor(args: argparse.Namespace) -> None:
    folder = tempfile.TemporaryDirectory(prefix="labservice-bench-storing-")
    work = Path(folder.name)
    patients = 500
    pool = args.clients * 3000  # distinct CBCs per case and run: more than the clients can send
    start = datetime.now(UTC) - timedelta(days=300)
    rows = []
    with databases(args.postgres, work) as (real_url, floor_url):
        real_url = real_url.replace("postgresql://", "postgresql+psycopg://")
        floor_url = floor_url.replace("postgresql://", "postgresql+psycopg://")
        auth = bearer(create_api_key(real_url, ("interpret", "read")))
        migrate(floor_url)  # before its workers start, as the service migrates under a lock
        add_floor_patients(floor_url, [run * 2 for run in range(args.storing_runs + 1)], patients)
        real_env = {
            "LABSERVICE_DATABASE_URL": real_url,
            "LABSERVICE_RATE_LIMIT": "off",
            "LABSERVICE_RATE_LIMIT_UPLOADS": "off",
            "LABSERVICE_BATCH_DIRECTORY": str(work / "batches"),
            "LABSERVICE_CDS_FEEDBACK_FILE": str(work / "cds.jsonl"),
        }
        with (
            serve("wsgi:app", real_env, args.workers, ROOT) as (real, real_port),
            serve("floor_app:app", {"FLOOR_DATABASE_URL": floor_url}, args.workers, ROOT / "bench") as (
                floor,
                floor_port,
            ),
        ):
            cases = {
                "floor": (floor, floor_port, "/floor", {}),
                "storing": (real, real_port, "/api/v1/interpretations", auth),
            }
            for run in range(args.storing_runs + 1):  # run 0 warms both up and is not counted
                order = ["floor", "storing"] if run % 2 == 0 else ["storing", "floor"]
                measured = {}
                for name in order:
                    server, port, path, headers = cases[name]
                    tag = run * 2 + (name == "storing")
                    requests = [
                        build_request(
                            "POST",
                            path,
                            "127.0.0.1",
                            port,
                            json.dumps(storing_cbc(tag, n, patients, start)).encode(),
                            headers=headers,
                        )
                        for n in range(pool)
                    ]
                    seconds = 1.0 if run == 0 else args.storing_seconds
                    before = worker_cpu_seconds(server.pid)
                    result = run_load("127.0.0.1", port, requests, seconds=seconds, clients=args.clients)
                    cpu = worker_cpu_seconds(server.pid) - before
                    if set(result.statuses) != {200}:
                        raise SystemExit(f"{name}: statuses {result.statuses}")
                    measured[name] = (result, 1000 * cpu / max(result.requests, 1))
                if run:
                    rows.append((run, measured))
    folder.cleanup()
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nStoring POST against its floor ({database}; gunicorn {args.workers} sync workers each, {args.clients} "
        f"closed-loop clients, {args.storing_seconds:.0f} s per case, {args.storing_runs} runs, alternating):"
    )
    print("| run | floor req/s | storing req/s | floor CPU ms/req | storing CPU ms/req | ratio (CPU) | ratio (req/s) |")
    print("|---|---|---|---|---|---|---|")
    ratios, rps_ratios = [], []
    for run, measured in rows:
        (floor_result, floor_cpu), (real_result, real_cpu) = measured["floor"], measured["storing"]
        ratios.append(real_cpu / floor_cpu)
        rps_ratios.append(floor_result.rps / real_result.rps)
        print(
            f"| {run} | {floor_result.rps:,.0f} | {real_result.rps:,.0f} | {floor_cpu:.2f} | {real_cpu:.2f} | "
            f"{ratios[-1]:.2f} | {rps_ratios[-1]:.2f} |"
        )
    print(
        f"storing / floor, CPU per request: min {min(ratios):.2f}, median {statistics.median(ratios):.2f} "
        f"(requests/s: min {min(rps_ratios):.2f}, median {statistics.median(rps_ratios):.2f}) over {len(rows)} "
        f"runs; target <= 2"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--storing-runs", type=int, default=3)
    parser.add_argument("--storing-seconds", type=float, default=5.0)
    parser.add_argument("--only-storing", action="store_true", help="only the storing request against its floor")
    parser.add_argument("--postgres", help="a PostgreSQL server URL: the storing comparison on two new databases there")
    args = parser.parse_args()
    if args.only_storing:
        storing_against_floor(args)
        return
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    folder = tempfile.TemporaryDirectory(prefix="labservice-bench-")
    database_url = f"sqlite:///{Path(folder.name) / 'labservice.sqlite'}"
    auth = bearer(create_api_key(database_url, ("interpret",)))  # the API needs a key (issue 6)
    server = subprocess.Popen(
        [str(gunicorn), "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LABSERVICE_DATABASE_URL": database_url,
            "LABSERVICE_RATE_LIMIT": "off",
            "LABSERVICE_RATE_LIMIT_UPLOADS": "off",
        },  # capacity, as bench/load.py
    )
    try:
        wait_ready(port)
        time.sleep(1.0)
        cases = [
            ("GET /healthz (ceiling)", [build_request("GET", "/healthz", "127.0.0.1", port)]),
            (
                "POST one CBC (pancytopenia, lesions)",
                [
                    build_request(
                        "POST", "/api/v1/interpretations", "127.0.0.1", port, json.dumps(ONE_CBC).encode(), headers=auth
                    )
                ],
            ),
            (
                "POST one CBC (normal)",
                [
                    build_request(
                        "POST",
                        "/api/v1/interpretations",
                        "127.0.0.1",
                        port,
                        json.dumps(NORMAL_CBC).encode(),
                        headers=auth,
                    )
                ],
            ),
            (
                "POST array of 100 CBCs",
                [
                    build_request(
                        "POST",
                        "/api/v1/interpretations",
                        "127.0.0.1",
                        port,
                        json.dumps([ONE_CBC, NORMAL_CBC] * 50).encode(),
                        headers=auth,
                    )
                ],
            ),
        ]
        run_load("127.0.0.1", port, cases[1][1], seconds=1.0, clients=args.clients)  # warm-up
        results = [
            (name, run_load("127.0.0.1", port, reqs, seconds=args.seconds, clients=args.clients))
            for name, reqs in cases
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        folder.cleanup()
    ceiling = results[0][1].rps
    print(
        f"gunicorn {args.workers} sync workers, {args.clients} closed-loop clients, "
        f"{args.seconds:.0f} s per case, loopback"
    )
    print("| request | requests/s | % of ceiling | p50 ms | p99 ms | statuses |\n|---|---|---|---|---|---|")
    for name, r in results:
        print(
            f"| {name} | {r.rps:,.0f} | {100 * r.rps / ceiling:.0f} % | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{dict(sorted(r.statuses.items()))} |"
        )
    storing_against_floor(args)


if __name__ == "__main__":
    main()
