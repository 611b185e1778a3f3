"""Worklist benchmark: the dashboard's worklist page and the referrals API on a full store, SQLite and PostgreSQL.

For each database it
  1. seeds a fresh database (bench/seed_store.py, in a child process): 10,000 patients x 10 CBCs
     (--smoke: 50 x 10) at increasing collection times, interpreted by the real engine and stored through
     the real repository in transactions of 1,000 CBCs, with delta checks and referrals, part of them closed;
     SQLite: a file in a temporary directory; PostgreSQL: a throw-away database labservice_bench_<random>
     on --postgres (dropped at the end; "PostgreSQL: not reachable" and the run goes on without it);
  2. starts gunicorn (2 sync workers, wsgi:app, LABSERVICE_DATABASE_URL, LABSERVICE_AUTO_MIGRATE=false)
     on a free loopback port, warms it up, and checks that each endpoint answers a full page;
  3. measures GET /dashboard/ (the worklist page, 50 rows) and GET /api/v1/referrals?per_page=50:
     --requests sequential requests (one client), then the same number from --clients concurrent
     closed-loop clients; a new connection per request (bench/loadgen.py), latency from connect to the
     last byte of the response.
Prints the seeding figures and a table: p50, p99 and max latency, requests/s, errors, and whether p99 met the
target. Timings are never asserted: the exit status is 1 only when a request failed (an error, a status other
than 200, or a page without its rows) or a database could not be seeded.

Usage: python bench/dashboard.py [--smoke] [--patients 10000] [--requests 500] [--clients 4]
Target: p99 <= 200 ms for both endpoints (page of 50) with 100,000 stored CBCs of 10,000 patients.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from credentials import bearer, create_api_key, create_user, sign_in  # noqa: E402
from loadgen import _one as one_request  # noqa: E402
from loadgen import build_request  # noqa: E402

TARGET_P99_MS = 200.0
PER_PAGE = 50
ENDPOINTS = (
    ("worklist page", "/dashboard/"),
    ("referrals API", f"/api/v1/referrals?per_page={PER_PAGE}"),
)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"
TABLE_HEADER = (
    "| database | endpoint | clients | requests | p50 ms | p99 ms | max ms | req/s | errors | target p99 ≤ 200 ms |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class Run:
    database: str
    endpoint: str
    clients: int
    latencies: list[float]  # seconds, of the requests that answered
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # connection errors and the like

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def errors(self) -> int:
        return self.failures + sum(count for status, count in self.statuses.items() if status != 200)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1e3

    def row(self) -> str:
        p99 = self.percentile_ms(0.99)
        met = "met" if p99 <= TARGET_P99_MS else "missed"
        return (
            f"| {self.database} | {self.endpoint} | {self.clients} | {self.requests:,} | "
            f"{self.percentile_ms(0.5):.1f} | {p99:.1f} | {self.percentile_ms(1.0):.1f} | "
            f"{self.requests / self.seconds:,.1f} | {self.errors} | {met} |"
        )


# --- load ----------------------------------------------------------------------------------------------


def _client(port: int, request: bytes, count: int, out: mp.Queue) -> None:
    latencies, statuses, failures = [], {}, 0
    for _ in range(count):
        try:
            status, latency = one_request(HOST, port, request)
        except (OSError, ValueError, IndexError):
            failures += 1
            continue
        latencies.append(latency)
        statuses[status] = statuses.get(status, 0) + 1
    out.put((latencies, statuses, failures))


def measure(
    database: str, endpoint: str, port: int, path: str, requests: int, clients: int, headers: dict[str, str]
) -> Run:
    """`requests` GETs of `path` in all, from `clients` closed-loop client processes (1: in this process)."""
    request = build_request("GET", path, HOST, port, headers=headers)
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    start = time.perf_counter()
    if clients == 1:
        _client(port, request, requests, queue)
        parts = [queue.get()]
    else:
        procs = [ctx.Process(target=_client, args=(port, request, share, queue)) for share in shares]
        for proc in procs:
            proc.start()
        parts = [queue.get() for _ in procs]
        for proc in procs:
            proc.join()
    seconds = time.perf_counter() - start
    run = Run(database, endpoint, clients, [], seconds)
    for latencies, statuses, failures in parts:
        run.latencies += latencies
        run.failures += failures
        for status, count in statuses.items():
            run.statuses[status] = run.statuses.get(status, 0) + count
    return run


def check_page(port: int, name: str, path: str, expected: int, headers: dict[str, str]) -> str | None:
    """None when the endpoint answers 200 with a page of `expected` referrals; else what is wrong."""
    try:
        request = urllib.request.Request(f"http://{HOST}:{port}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
    except OSError as error:  # HTTPError included
        return f"{name}: GET {path} failed: {error}"
    if path.startswith("/api/"):
        try:
            shown = len(json.loads(body).get("items", []))
        except (ValueError, AttributeError):
            return f"{name}: GET {path} did not answer a JSON object"
    else:  # one open referral per patient: the page's rows name as many distinct patients
        shown = len(set(re.findall(rb"BENCH-[0-9]{6}", body)))
    if shown != expected:
        return f"{name}: GET {path} shows {shown} referrals, not {expected}"
    return None


# --- databases and the server ---------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="labservice-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'labservice.sqlite'}"


@contextmanager
def postgresql_database(base: str) -> Iterator[str | None]:
    """A throw-away database on the server at `base`, dropped at the end; None when the server is unreachable."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"labservice_bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, patients: int, per_patient: int, progress: bool) -> dict:
    """Run bench/seed_store.py in a child process (this one stays small for the forked clients)."""
    argv = [
        sys.executable,
        str(ROOT / "bench" / "seed_store.py"),
        url,
        "--patients",
        str(patients),
        "--per-patient",
        str(per_patient),
        *(["--progress"] if progress else []),
    ]
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"seeding {url} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(url: str, workers: int) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LABSERVICE_DATABASE_URL": url, "LABSERVICE_AUTO_MIGRATE": "false"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-w",
            str(workers),
            "-b",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_ready(server, port)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_ready(server: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    request = build_request("GET", "/healthz", HOST, port)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            if one_request(HOST, port, request)[0] == 200:
                return
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz")


# --- the benchmark --------------------------------------------------------------------------------------


def seeding_line(name: str, facts: dict) -> str:
    open_referrals = facts["open_referrals"]
    attention = sum(count for urgency, count in open_referrals.items() if urgency != "routine")
    by_urgency = ", ".join(f"{urgency} {count:,}" for urgency, count in open_referrals.items())
    deltas = ", ".join(f"{code} {count:,}" for code, count in sorted(facts["delta_findings"].items()))
    return (
        f"{name}: seeded {facts['stored']:,} CBCs of {facts['patients']:,} patients in {facts['seconds']:.1f} s "
        f"({facts['cbcs_per_second']:,.0f} CBCs/s, 1,000 per transaction); delta assessed "
        f"{facts['delta_assessed']:,} ({deltas}); referrals {facts['referrals_total']:,}, "
        f"{facts['referrals_closed_while_seeding']:,} closed while seeding, "
        f"{sum(open_referrals.values()):,} open ({by_urgency}; {attention:,} not routine)"
    )


def bench_database(name: str, url: str, args: argparse.Namespace, runs: list[Run], problems: list[str]) -> None:
    facts = seed(url, args.patients, args.per_patient, progress=not args.smoke)
    print(seeding_line(name, facts), flush=True)
    expected = min(PER_PAGE, sum(facts["open_referrals"].values()))
    api_key = bearer(create_api_key(url, ("read",)))  # the API needs a key (issue 6)
    username = create_user(url)  # and the dashboard a signed-in user
    with gunicorn(url, args.workers) as port:
        auth = {"/api/": api_key, "/dashboard/": sign_in(f"http://{HOST}:{port}", username)}

        def headers(path: str) -> dict[str, str]:
            return next(value for prefix, value in auth.items() if path.startswith(prefix))

        for endpoint, path in ENDPOINTS:  # warm-up: every worker's connections, templates and caches
            measure(name, endpoint, port, path, args.warmup, args.clients, headers(path))
            problem = check_page(port, f"{name} {endpoint}", path, expected, headers(path))
            if problem:
                problems.append(problem)
        before = os.getloadavg()[0]
        for clients in (1, args.clients):
            for endpoint, path in ENDPOINTS:
                run = measure(name, endpoint, port, path, args.requests, clients, headers(path))
                runs.append(run)
                if not args.smoke:
                    print(f"  {run.row()}", file=sys.stderr, flush=True)
                if run.errors:
                    problems.append(
                        f"{name} {endpoint}, {clients} client(s): {run.errors} failed requests "
                        f"(statuses {dict(sorted(run.statuses.items()))}, {run.failures} not answered)"
                    )
        print(
            f"{name}: load average (1 min) {before:.2f} before measuring, {os.getloadavg()[0]:.2f} after "
            f"({os.cpu_count()} CPUs; the server, the clients and anything else running share them)",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="50 patients x 10 CBCs, 20 requests (CI)")
    parser.add_argument("--patients", type=int, help="default 10,000 (smoke 50)")
    parser.add_argument("--per-patient", type=int, default=10)
    parser.add_argument("--requests", type=int, help="per endpoint and mode; default 500 (smoke 20)")
    parser.add_argument("--warmup", type=int, help="requests per endpoint before measuring; default 40 (smoke 8)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the second run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LABSERVICE_BENCH_POSTGRES", DEFAULT_POSTGRES),
        help="server URL where the throw-away database is created (trust auth)",
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    args.patients = args.patients or (50 if args.smoke else 10_000)
    args.requests = args.requests or (20 if args.smoke else 500)
    args.warmup = args.warmup or (8 if args.smoke else 40)

    runs: list[Run] = []
    problems: list[str] = []
    started = time.perf_counter()
    print(
        f"Worklist benchmark: {args.patients * args.per_patient:,} stored CBCs of {args.patients:,} patients; "
        f"gunicorn {args.workers} sync workers on loopback; {args.requests:,} requests per endpoint sequential, "
        f"then {args.requests:,} from {args.clients} concurrent clients; page of {PER_PAGE}",
        flush=True,
    )
    with sqlite_database() as url:
        try:
            bench_database("SQLite", url, args, runs, problems)
        except RuntimeError as error:
            problems.append(f"SQLite: {error}")
    if args.no_postgres:
        print("PostgreSQL: skipped (--no-postgres)")
    else:
        with postgresql_database(args.postgres) as url:
            if url is None:
                print("PostgreSQL: not reachable", flush=True)
            else:
                try:
                    bench_database("PostgreSQL", url, args, runs, problems)
                except RuntimeError as error:
                    problems.append(f"PostgreSQL: {error}")
    print()
    print(TABLE_HEADER)
    for run in runs:
        print(run.row())
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")
    for problem in problems:
        print(f"bench/dashboard.py: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
