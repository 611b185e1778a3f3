"""Load: gunicorn (2 sync workers, wsgi:app, a throw-away database) on loopback, driven at a fixed arrival rate.

Usage: python bench/load.py [--rate 200] [--seconds 60] [--workers 2] [--database-url URL] [--smoke]

An open-loop generator (bench/openloop.py): request i is due at start + i / rate whatever happened to the
ones before, so a slow answer does not slow the arrivals down (a closed-loop client would wait, send less and
hide the queue: coordinated omission). Latency is measured from the time a request was *due* to its last
byte; the time from the actual send is reported too, and how late the client sent (its own lag).

The mix, drawn in a fixed pseudo-random order (seed 6):
- 60 % interpretations: POST /api/v1/interpretations, one CBC of one of 2,000 patients with a new collection
  time, so each is stored, delta-checked and may open or update a referral;
- 5 % batch uploads: POST /api/v1/batches, a new CSV of 10 CBCs of those patients (stored too);
- 35 % dashboard reads, signed in: the worklist (GET /dashboard/, two in three) and a patient's page.

The API calls carry an API key (interpret and read scopes) and the dashboard reads a signed-in session cookie,
both made in the throw-away database (bench/credentials.py); the rate limits are off for this server
(LABSERVICE_RATE_LIMIT=off), since one key sends thousands of requests a minute. 200 patients (20 with
--smoke) are stored before the run so the worklist has a page to show. Errors are answers other than 200
(201 for a new batch) and failed connections. Target: no errors and p99 <= 100 ms at 200 requests/s.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from credentials import bearer, create_api_key, create_user, sign_in  # noqa: E402
from openloop import Planned, Result, percentile, run_open_loop  # noqa: E402

HOST = "127.0.0.1"
TARGET_P99_MS = 100.0
PATIENTS = 2000
SEEDED_PATIENTS = 200
BATCH_ROWS = 10
MIX = (("interpretation", 0.60), ("batch upload", 0.05), ("worklist page", 0.35 * 2 / 3), ("patient page", 0.35 / 3))
EXPECTED_STATUS = {"interpretation": (200,), "batch upload": (201,), "worklist page": (200,), "patient page": (200,)}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, workers: int, work: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
           "LABSERVICE_DATABASE_URL": database_url, "LABSERVICE_BATCH_DIRECTORY": str(work / "batches"),
           "LABSERVICE_CDS_FEEDBACK_FILE": str(work / "cds-feedback.jsonl"),
           "LABSERVICE_RATE_LIMIT": "off", "LABSERVICE_RATE_LIMIT_UPLOADS": "off"}
    log = (work / "gunicorn.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "-w", str(workers), "-b",
                               f"{HOST}:{port}", "--log-level", "warning", "--backlog", "2048", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {server.returncode}; see {work / 'gunicorn.log'}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not answer /healthz") from None
                time.sleep(0.2)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"",
                  content_type: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    if body or method == "POST":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def cbc(rng: random.Random, patient: int, when: datetime) -> dict:
    """One adult CBC; about one in six low enough to open a referral (platelets < 150 or neutrophils < 1.5)."""
    low = rng.random() < 1 / 6
    return {"patient": {"id": f"LOAD-{patient:05d}", "sex": "female" if patient % 2 else "male",
                        "age_years": 20 + patient % 60},
            "collected_at": when.isoformat().replace("+00:00", "Z"),
            "results": {"platelets": round(rng.uniform(15, 140) if low else rng.uniform(160, 380), 1),
                        "wbc": round(rng.uniform(4.2, 10.5), 2), "neutrophils": round(rng.uniform(0.4 if low else 1.8,
                                                                                                   6.5), 2),
                        "hemoglobin": round(rng.uniform(9.5 if low else 12.5, 16.5), 1)}}


def batch_csv(rng: random.Random, first_patient: int, when: datetime) -> bytes:
    rows = ["Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),WBC (10^9/L),NEUT# (10^9/L)"]
    for k in range(BATCH_ROWS):
        doc = cbc(rng, (first_patient + k) % PATIENTS, when + timedelta(seconds=k))
        values = doc["results"]
        rows.append(f"{doc['patient']['id']},{doc['collected_at']},{doc['patient']['sex'][0].upper()},"
                    f"{doc['patient']['age_years']},{values['platelets']},{values['hemoglobin']},{values['wbc']},"
                    f"{values['neutrophils']}")
    return ("\n".join(rows) + "\n").encode()


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = "loadbench5f3c9a"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def plan_requests(count: int, port: int, api: dict[str, str], session: dict[str, str], seeded: int,
                  seed: int = 6, start_index: int = 0) -> list[Planned]:
    """`count` requests of the mix, each unique (new collection times, new batch files), built in advance."""
    rng = random.Random(seed + start_index)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    planned = []
    for i in range(start_index, start_index + count):
        kind = rng.choices(kinds, weights)[0]
        when = T0 + timedelta(minutes=i)  # a new collection time for every request: nothing is a duplicate
        patient = rng.randrange(PATIENTS)
        if kind == "interpretation":
            body = json.dumps(cbc(rng, patient, when)).encode()
            payload = request_bytes("POST", "/api/v1/interpretations", port, api, body, "application/json")
        elif kind == "batch upload":
            body, content_type = multipart(batch_csv(rng, patient, when), f"load-{i}.csv")
            payload = request_bytes("POST", "/api/v1/batches", port, api, body, content_type)
        elif kind == "worklist page":
            payload = request_bytes("GET", "/dashboard/", port, session)
        else:
            payload = request_bytes("GET", f"/dashboard/patients/LOAD-{patient % seeded:05d}", port, session)
        planned.append(Planned(kind, payload))
    return planned


def seed_patients(port: int, api: dict[str, str], count: int) -> None:
    """`count` patients with one CBC each (the patient pages read them; some open referrals)."""
    rng = random.Random(1)
    for patient in range(count):
        body = json.dumps(cbc(rng, patient, T0 - timedelta(days=1))).encode()
        request = urllib.request.Request(f"http://{HOST}:{port}/api/v1/interpretations", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **api})
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise RuntimeError(f"seeding answered {response.status}")


def summarise(results: list[Result], seconds: float) -> list[dict]:
    rows = []
    for kind in [*(k for k, _ in MIX), "all"]:
        mine = [r for r in results if kind in ("all", r.kind)]
        if not mine:
            continue
        errors = [r for r in mine if r.status not in EXPECTED_STATUS.get(r.kind, (200,))]
        latency = sorted(r.latency_ms for r in mine)
        service = sorted(r.service_ms for r in mine)
        rows.append({"kind": kind, "requests": len(mine), "per_second": len(mine) / seconds,
                     "p50": percentile(latency, 50), "p99": percentile(latency, 99), "max": latency[-1],
                     "service_p50": percentile(service, 50), "service_p99": percentile(service, 99),
                     "errors": len(errors),
                     "statuses": dict(sorted(_count(str(r.status) for r in mine).items()))})
    return rows


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def print_run(rate: float, seconds: float, warmup: float, workers: int, database: str, results: list[Result],
              elapsed: float, loads: tuple[float, float]) -> dict:
    rows = summarise(results, seconds)
    lag = sorted(r.lag_ms for r in results)
    print(f"\nLoad: gunicorn {workers} sync workers on loopback, {database}, open loop at {rate:g} requests/s for "
          f"{seconds:g} s ({len(results):,} requests; the last answer came {elapsed:.1f} s after the first request "
          f"was due), {warmup:g} s warm-up not counted; latency from the time each request was due. Client lag "
          f"p99 {percentile(lag, 99):.1f} ms; load average {loads[0]:.1f} before, {loads[1]:.1f} after, "
          f"{os.cpu_count()} cores.\n")
    print("| request | requests | answered/s | p50 ms | p99 ms | max ms | p50 ms from send | p99 ms from send "
          "| errors | statuses |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        answered = (row["requests"] - row["errors"]) / elapsed
        print(f"| {row['kind']} | {row['requests']:,} | {answered:.1f} | {row['p50']:.1f} | {row['p99']:.1f} "
              f"| {row['max']:.1f} | {row['service_p50']:.1f} | {row['service_p99']:.1f} | {row['errors']} "
              f"| {row['statuses']} |")
    overall = rows[-1]
    overall["answered_per_second"] = (overall["requests"] - overall["errors"]) / elapsed
    return overall


def verdict(rate: float, overall: dict) -> str:
    if overall["errors"] == 0 and overall["p99"] <= TARGET_P99_MS:
        return "met"
    return f"missed (p99 {overall['p99']:,.0f} ms, {overall['errors']:,} errors)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (arrivals)")
    parser.add_argument("--rates", default=None,
                        help="several rates one after the other on the same server, e.g. 25,50,100,200")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at the same rate, not measured")
    parser.add_argument("--database-url", default=None, help="default: a throw-away SQLite file")
    parser.add_argument("--smoke", action="store_true", help="5 s at 50/s after 1 s of warm-up (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.rates, args.seconds, args.warmup = 50.0, None, 5.0, 1.0
    rates = [float(rate) for rate in args.rates.split(",")] if args.rates else [args.rate]
    work = Path(tempfile.mkdtemp(prefix="labservice-load-"))
    url = args.database_url or f"sqlite:///{work / 'load.sqlite'}"
    database = "SQLite" if args.database_url is None else "PostgreSQL" if "postgresql" in url else url.split(":")[0]
    summary: list[tuple[float, dict]] = []
    try:
        api = bearer(create_api_key(url, ("interpret", "read")))
        username = create_user(url)
        with gunicorn(url, args.workers, work) as port:
            session = sign_in(f"http://{HOST}:{port}", username)
            seeded = 20 if args.smoke else SEEDED_PATIENTS
            seed_patients(port, api, seeded)
            for number, rate in enumerate(rates):
                offset = number * 10**6  # every run's requests are new (collection times, batch files)
                warm = plan_requests(int(args.warmup * rate), port, api, session, seeded, start_index=offset + 900_000)
                run_open_loop(HOST, port, warm, rate)
                planned = plan_requests(int(args.seconds * rate), port, api, session, seeded, start_index=offset)
                load_before = os.getloadavg()[0]
                started = time.perf_counter()
                results = run_open_loop(HOST, port, planned, rate)
                elapsed = time.perf_counter() - started
                overall = print_run(rate, args.seconds, args.warmup, args.workers, database, results, elapsed,
                                    (load_before, os.getloadavg()[0]))
                print(f"\nTarget: no errors and p99 <= {TARGET_P99_MS:g} ms at {rate:g} requests/s: "
                      f"{verdict(rate, overall)}.", flush=True)
                summary.append((rate, overall))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(summary) > 1:
        print(f"\nAll requests, {database}, {args.seconds:g} s per rate:\n")
        print("| requests/s sent | answered/s | p50 ms | p99 ms | max ms | errors | target p99 <= 100 ms, no errors |")
        print("|---|---|---|---|---|---|---|")
        for rate, overall in summary:
            print(f"| {rate:g} | {overall['answered_per_second']:.1f} | {overall['p50']:,.1f} | {overall['p99']:,.1f} "
                  f"| {overall['max']:,.1f} | {overall['errors']:,} | {verdict(rate, overall)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
