"""Load: the service as `labservice serve` runs it (the buffering front, 2 gunicorn sync workers behind it, a
throw-away database) on loopback: capacity, overload and slow clients (issue 12 items 3, 4 and 6).

Usage: python bench/load.py [--seconds 30] [--factor 3] [--rounds 3] [--capacity-seconds 10] [--workers 2]
                            [--database-url URL] [--smoke] [--mix-rates 25,50]

1. **Capacity**: closed loop, twice as many callers as workers, each sending the next storing interpretation
   (POST /api/v1/interpretations, one CBC of one of 2,000 patients with a new collection time: stored and
   delta-checked) as soon as its last one is answered, for --capacity-seconds after a warm-up. Capacity is the
   answered requests per second, measured before each overload round and after it (--rounds rounds: capacity,
   overload, capacity, overload, ..., capacity); each round's goodput is compared with the mean of the two
   capacities around it (the machine is shared, its speed drifts), and the rounds' min/median/max printed.
2. **Overload**: open loop (bench/openloop.py: request i is due at start + i / rate whatever happened to the
   ones before, so a queue shows as latency, not as fewer requests) of the same storing requests at --factor
   times that capacity for --seconds. Targets (issue 12 item 3): no timeouts or resets (every request answered
   200 or 503), every refusal (503 + Retry-After) within 500 ms of its due time, goodput (200s per second) at
   least 90 % of the capacity measured around it, answered p99 <= 1 s. Beside it: the answered requests per
   second of the workers' CPU against the same at capacity (below 100 %: work wasted; else CPU not given), and
   from /proc the CPU of the front, gunicorn and the generator, and the workers' time on a core, waiting for
   one and asleep.
3. **Slow clients**: 20 sockets send a storing request a byte every 50 ms (ten the headers, ten the body) and
   are held open while health checks and storing interpretations are sent one after the other for
   --slow-seconds. Target (item 4): each answered within 1 s.
4. With --mix-rates, the earlier mix (60 % storing interpretations, 5 % batch uploads of 10 rows, 35 %
   signed-in worklist and patient pages) at each rate, open loop, --seconds each.

The API calls carry an API key (interpret and read scopes) made in the throw-away database
(bench/credentials.py); the rate limits are off for this server (LABSERVICE_RATE_LIMIT=off), since one key sends
thousands of requests a minute. Latency is counted from the time a request was due. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from credentials import bearer, create_api_key, create_user, sign_in  # noqa: E402
from openloop import APP_503, Planned, Result, percentile, run_closed_loop, run_open_loop  # noqa: E402

HOST = "127.0.0.1"
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
def served(database_url: str, workers: int, work: Path):
    """`labservice serve -w N` on a free port: the buffering front, gunicorn behind it (as the README runs it)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "LABSERVICE_DATABASE_URL": database_url,
        "LABSERVICE_BATCH_DIRECTORY": str(work / "batches"),
        "LABSERVICE_INSTANCE_PATH": str(work / "instance"),
        "LABSERVICE_CDS_FEEDBACK_FILE": str(work / "cds-feedback.jsonl"),
        "LABSERVICE_RATE_LIMIT": "off",
        "LABSERVICE_RATE_LIMIT_UPLOADS": "off",
    }
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "labservice.cli", "serve", "-w", str(workers), "-b", f"{HOST}:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"labservice serve exited with {server.returncode}; see {work / 'serve.log'}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
                    break
            except OSError:  # not listening yet, or 503 while the workers boot
                if time.monotonic() > deadline:
                    raise RuntimeError("labservice serve did not answer /healthz") from None
                time.sleep(0.2)
        yield port, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def request_bytes(
    method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"", content_type: str | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    if body or method == "POST":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def cbc(rng: random.Random, patient: int, when: datetime) -> dict:
    """One adult CBC; about one in six low enough to open a referral (platelets < 150 or neutrophils < 1.5)."""
    low = rng.random() < 1 / 6
    return {
        "patient": {
            "id": f"LOAD-{patient:05d}",
            "sex": "female" if patient % 2 else "male",
            "age_years": 20 + patient % 60,
        },
        "collected_at": when.isoformat().replace("+00:00", "Z"),
        "results": {
            "platelets": round(rng.uniform(15, 140) if low else rng.uniform(160, 380), 1),
            "wbc": round(rng.uniform(4.2, 10.5), 2),
            "neutrophils": round(rng.uniform(0.4 if low else 1.8, 6.5), 2),
            "hemoglobin": round(rng.uniform(9.5 if low else 12.5, 16.5), 1),
        },
    }


def batch_csv(rng: random.Random, first_patient: int, when: datetime) -> bytes:
    rows = ["Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),WBC (10^9/L),NEUT# (10^9/L)"]
    for k in range(BATCH_ROWS):
        doc = cbc(rng, (first_patient + k) % PATIENTS, when + timedelta(seconds=k))
        values = doc["results"]
        rows.append(
            f"{doc['patient']['id']},{doc['collected_at']},{doc['patient']['sex'][0].upper()},"
            f"{doc['patient']['age_years']},{values['platelets']},{values['hemoglobin']},{values['wbc']},"
            f"{values['neutrophils']}"
        )
    return ("\n".join(rows) + "\n").encode()


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = "loadbench5f3c9a"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def plan_requests(
    count: int,
    port: int,
    api: dict[str, str],
    session: dict[str, str],
    seeded: int,
    seed: int = 6,
    start_index: int = 0,
) -> list[Planned]:
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
        request = urllib.request.Request(
            f"http://{HOST}:{port}/api/v1/interpretations",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **api},
        )
        for attempt in range(10):  # a 503 (a worker still booting, the machine busy): retry after Retry-After
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status != 200:
                        raise RuntimeError(f"seeding answered {response.status}")
                    break
            except urllib.error.HTTPError as error:
                if error.code != 503 or attempt == 9:
                    raise
                time.sleep(float(error.headers.get("Retry-After", "1")))


def summarise(results: list[Result], seconds: float) -> list[dict]:
    rows = []
    for kind in [*(k for k, _ in MIX), "all"]:
        mine = [r for r in results if kind in ("all", r.kind)]
        if not mine:
            continue
        errors = [r for r in mine if r.status not in EXPECTED_STATUS.get(r.kind, (200,))]
        latency = sorted(r.latency_ms for r in mine)
        service = sorted(r.service_ms for r in mine)
        rows.append(
            {
                "kind": kind,
                "requests": len(mine),
                "per_second": len(mine) / seconds,
                "p50": percentile(latency, 50),
                "p99": percentile(latency, 99),
                "max": latency[-1],
                "service_p50": percentile(service, 50),
                "service_p99": percentile(service, 99),
                "errors": len(errors),
                "statuses": dict(sorted(_count(str(r.status) for r in mine).items())),
            }
        )
    return rows


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def print_run(
    rate: float,
    seconds: float,
    warmup: float,
    workers: int,
    database: str,
    results: list[Result],
    elapsed: float,
    loads: tuple[float, float],
) -> dict:
    rows = summarise(results, seconds)
    lag = sorted(r.lag_ms for r in results)
    print(
        f"\nThe mix: `labservice serve -w {workers}` on loopback, {database}, open loop at {rate:g} requests/s for "
        f"{seconds:g} s ({len(results):,} requests; the last answer came {elapsed:.1f} s after the first request "
        f"was due), {warmup:g} s warm-up not counted; latency from the time each request was due. Client lag "
        f"p99 {percentile(lag, 99):.1f} ms; load average {loads[0]:.1f} before, {loads[1]:.1f} after, "
        f"{os.cpu_count()} cores.\n"
    )
    print(
        "| request | requests | answered/s | p50 ms | p99 ms | max ms | p50 ms from send | p99 ms from send "
        "| errors | statuses |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        answered = (row["requests"] - row["errors"]) / elapsed
        print(
            f"| {row['kind']} | {row['requests']:,} | {answered:.1f} | {row['p50']:.1f} | {row['p99']:.1f} "
            f"| {row['max']:.1f} | {row['service_p50']:.1f} | {row['service_p99']:.1f} | {row['errors']} "
            f"| {row['statuses']} |"
        )
    overall = rows[-1]
    overall["answered_per_second"] = (overall["requests"] - overall["errors"]) / elapsed
    return overall


class CpuMeter:
    """CPU seconds (user + system) used since the last reading by the front, by gunicorn (its master and
    workers: the front's descendants) and by this load generator, read from /proc (Linux). `serve_pid` is
    `labservice serve`'s process: the front is its child running labservice.serving.front (the job worker, its
    other child, is counted in neither)."""

    def __init__(self, serve_pid: int) -> None:
        self.serve_pid = serve_pid
        self.last = self._now()

    def since_last(self) -> dict[str, float]:
        now = self._now()
        used = {name: now[name] - self.last.get(name, 0.0) for name in now}
        self.last = now
        return used

    def _now(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
        front_pid = self.serve_pid
        for pid, parent in parents.items():
            if parent == self.serve_pid and b"labservice.serving.front" in _cmdline(pid):
                front_pid = pid
        descendants, frontier = set(), {front_pid}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - descendants
            descendants |= frontier
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # The workers (gunicorn's children): seconds on a core and seconds runnable but waiting for one (the
        # rest of their time they slept: idle, or waiting for the disk).
        workers = [pid for pid in descendants if parents.get(parents.get(pid, 0), 0) == front_pid]
        running = waiting = 0.0
        for pid in workers:
            try:
                with open(f"/proc/{pid}/schedstat") as schedstat:
                    on_cpu, queued = schedstat.read().split()[:2]
            except OSError:
                continue
            running += int(on_cpu) / 1e9
            waiting += int(queued) / 1e9
        return {
            "front": times.get(front_pid, 0.0),
            "gunicorn": sum(times.get(pid, 0.0) for pid in descendants),
            "generator": usage.ru_utime + usage.ru_stime,
            "workers_running": running,
            "workers_waiting": waiting,
            "wall": time.monotonic(),
        }


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""


def storing_plan(count: int, port: int, api: dict[str, str], start_index: int) -> list[Planned]:
    """`count` storing interpretations, each new (a new collection time, a second apart, in the past), of the
    mix's 2,000 patients."""
    rng = random.Random(7 + start_index)
    plan = []
    for i in range(start_index, start_index + count):
        body = json.dumps(cbc(rng, rng.randrange(PATIENTS), T0 + timedelta(seconds=i))).encode()
        plan.append(
            Planned(
                "interpretation", request_bytes("POST", "/api/v1/interpretations", port, api, body, "application/json")
            )
        )
    return plan


def measure_capacity(
    port: int, api: dict[str, str], clients: int, seconds: float, warmup: float, start_index: int, cpu: CpuMeter
) -> dict:
    if warmup:
        run_closed_loop(HOST, port, storing_plan(int(warmup * 400) + 50, port, api, 5_000_000), clients, warmup)
    cpu.since_last()  # the warm-up not counted
    plan = storing_plan(int(seconds * 400) + 100, port, api, start_index)
    started = time.perf_counter()
    results = run_closed_loop(HOST, port, plan, clients, seconds)
    elapsed = time.perf_counter() - started
    ok = sorted(r.service_ms for r in results if r.status == 200)
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(results),
        "ok": len(ok),
        "per_second": len(ok) / elapsed,
        "p50": percentile(ok, 50),
        "p99": percentile(ok, 99),
        "statuses": _count(str(r.status) for r in results),
    }


def overload(port: int, api: dict[str, str], rate: float, seconds: float, start_index: int) -> dict:
    plan = storing_plan(int(rate * seconds), port, api, start_index)
    started = time.perf_counter()
    results = run_open_loop(HOST, port, plan, rate)
    elapsed = time.perf_counter() - started
    answered = sorted(r.latency_ms for r in results if r.status == 200)
    refused = sorted(r.latency_ms for r in results if r.status in (503, APP_503))
    by_app = [r.latency_ms for r in results if r.status == APP_503]
    refused_sent = [r.service_ms for r in results if r.status in (503, APP_503)]
    errors = [r for r in results if r.status not in (200, 503, APP_503)]
    lag = sorted(r.lag_ms for r in results)
    return {
        "rate": rate,
        "seconds": seconds,
        "elapsed": elapsed,
        "requests": len(results),
        "answered": len(answered),
        "refused": len(refused),
        "errors": len(errors),
        "refused_by_app": sum(r.status == APP_503 for r in results),
        "goodput": len(answered) / seconds,
        "answered_p50": percentile(answered, 50),
        "answered_p99": percentile(answered, 99),
        "answered_max": answered[-1] if answered else float("nan"),
        "refused_p99": percentile(refused, 99),
        "refused_max": refused[-1] if refused else 0.0,
        "refused_by_app_max": max(by_app, default=0.0),
        "refused_max_from_send": max(refused_sent, default=0.0),
        "lag_p99": percentile(lag, 99),
        "statuses": _count(str(r.status) for r in results),
    }


class Dribbler(threading.Thread):
    """Sends one more byte on every slow socket each `interval` (the last byte held back) until stopped."""

    def __init__(self, pending: list[tuple[socket.socket, bytes]], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pending, self.interval, self.stopped = pending, interval, threading.Event()
        self.sent = [0] * len(pending)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for i, (sock, data) in enumerate(self.pending):
                if self.sent[i] < len(data) - 1:
                    try:
                        sock.send(data[self.sent[i] : self.sent[i] + 1])
                        self.sent[i] += 1
                    except OSError:
                        pass


def _timed(url: str, data: bytes | None, headers: dict[str, str]) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
            status = str(answer.status)
    except urllib.error.HTTPError as error:
        status = str(error.code)
    except OSError as error:
        status = type(error).__name__
    return status, (time.perf_counter() - started) * 1e3


def slow_clients(port: int, api: dict[str, str], sockets: int, seconds: float) -> dict:
    rng = random.Random(11)
    slow, pending = [], []
    for i in range(sockets):
        sock = socket.create_connection((HOST, port), timeout=30)
        body = json.dumps(cbc(rng, i, T0 + timedelta(days=200))).encode()
        data = request_bytes("POST", "/api/v1/interpretations", port, api, body, "application/json")
        head_end = data.index(b"\r\n\r\n") + 4
        if i % 2:
            sock.sendall(data[:head_end])
            pending.append((sock, data[head_end:]))
        else:
            pending.append((sock, data))
        slow.append(sock)
    dribbler = Dribbler(pending)
    dribbler.start()
    health: list[tuple[str, float]] = []
    stored: list[tuple[str, float]] = []
    deadline = time.perf_counter() + seconds
    n = 0
    try:
        while time.perf_counter() < deadline:
            health.append(_timed(f"http://{HOST}:{port}/healthz", None, {}))
            body = json.dumps(cbc(rng, n % PATIENTS, T0 + timedelta(days=250, seconds=n))).encode()
            stored.append(
                _timed(
                    f"http://{HOST}:{port}/api/v1/interpretations", body, {"Content-Type": "application/json", **api}
                )
            )
            n += 1
        still_open = 0
        for sock in slow:
            sock.setblocking(False)
            try:
                sock.recv(1)  # an answer, or b"" when the front closed it
            except BlockingIOError:
                still_open += 1  # nothing answered, not closed: still waiting for its request
            except OSError:
                pass
    finally:
        dribbler.stopped.set()
        dribbler.join(timeout=5)
        for sock in slow:
            sock.close()
    out = {"sockets": sockets, "still_open": still_open, "bytes_sent": sum(dribbler.sent), "seconds": seconds}
    for name, rows in (("health", health), ("interpretation", stored)):
        times = sorted(ms for _, ms in rows)
        out[name] = {
            "requests": len(rows),
            "ok": sum(status == "200" for status, _ in rows),
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "max": times[-1] if times else 0.0,
            "statuses": _count(status for status, _ in rows),
        }
    return out


def print_cpu(parts: list[tuple[str, dict]], workers: int) -> None:
    print("\nCPU used in each part (the share of the 2 cores the service got decides its capacity here):\n")
    print(
        "| part | CPU s: front | gunicorn (master and workers) | load generator | gunicorn's cores "
        "| gunicorn ms per 200 | front ms per request | workers on a core / waiting for one / asleep |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, part in parts:
        cpu, ok = part["cpu"], part.get("ok", part.get("answered", 0))
        wall = part.get("elapsed", part.get("seconds", 1.0))
        worker_wall = workers * cpu["wall"]
        running, waiting = cpu["workers_running"] / worker_wall, cpu["workers_waiting"] / worker_wall
        print(
            f"| {name} | {cpu['front']:.1f} | {cpu['gunicorn']:.1f} | {cpu['generator']:.1f} "
            f"| {cpu['gunicorn'] / wall:.2f} | {1e3 * cpu['gunicorn'] / max(ok, 1):.1f} "
            f"| {1e3 * cpu['front'] / max(part['requests'], 1):.2f} "
            f"| {100 * running:.0f} % / {100 * waiting:.0f} % / {100 * (1 - running - waiting):.0f} % |"
        )


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(
    capacities: list[dict],
    overloads: list[dict],
    slow: dict,
    workers: int,
    database: str,
    factor: float,
    loads: list[float],
) -> bool:
    """The tables. Each overload round's goodput is compared with the mean of the capacities measured just before
    and just after it (the machine is shared: its speed drifts, and the two bracket the round)."""
    print(
        f"\nLoad ({database}; `labservice serve -w {workers}`: the front and {workers} gunicorn sync workers; "
        f"{os.cpu_count()} cores; load average {', '.join(f'{x:.1f}' for x in loads)} at the start of each "
        f"part and the end; the load generator runs on the same cores)\n"
    )
    print(
        "| capacity: closed loop, storing interpretations | callers | seconds | answered/s | p50 ms | p99 ms "
        "| statuses |"
    )
    print("|---|---|---|---|---|---|---|")
    for number, capacity in enumerate(capacities):
        name = "before round 1" if number == 0 else f"after round {number}"
        print(
            f"| {name} | {capacity['clients']} | {capacity['seconds']:.1f} | {capacity['per_second']:.1f} "
            f"| {capacity['p50']:.1f} | {capacity['p99']:.1f} | {capacity['statuses']} |"
        )
    print(
        f"\n| overload round: open loop at {factor:g} x the capacity just before, {overloads[0]['seconds']:g} s "
        "| sent/s | client lag p99 ms | goodput/s | % of capacity around it | CPU: % of capacity's 200s per "
        "worker CPU s | refused (by the app) | refusal p99 / max ms (the app's max; max from the send) "
        "| answered p50 / p99 / max ms | timeouts, resets, other |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    shares, efficiencies = [], []
    for number, over in enumerate(overloads):
        around = (capacities[number]["per_second"] + capacities[number + 1]["per_second"]) / 2
        share = 100 * over["goodput"] / max(around, 1e-9)
        shares.append(share)
        per_cpu = [
            part["ok"] / max(part["cpu"]["workers_running"], 1e-9)
            for part in (capacities[number], capacities[number + 1])
        ]
        efficiency = 100 * over["answered"] / max(over["cpu"]["workers_running"], 1e-9) / (sum(per_cpu) / 2)
        efficiencies.append(efficiency)
        print(
            f"| {number + 1} | {over['rate']:.0f} | {over['lag_p99']:.0f} | {over['goodput']:.1f} "
            f"| {share:.0f} % (of {around:.1f}/s) | {efficiency:.0f} % | {over['refused']:,} "
            f"({over['refused_by_app']:,}) | {over['refused_p99']:.0f} / {over['refused_max']:.0f} "
            f"({over['refused_by_app_max']:.0f}; {over['refused_max_from_send']:.0f}) "
            f"| {over['answered_p50']:.0f} / {over['answered_p99']:.0f} / {over['answered_max']:.0f} "
            f"| {over['errors']:,} |"
        )
    errors = sum(over["errors"] for over in overloads)
    refused_max = max(over["refused_max"] for over in overloads)
    answered_p99 = [over["answered_p99"] for over in overloads]
    goodput_ok = min(shares) >= 90
    refusals_ok = refused_max <= 500
    p99_ok = all(over["answered"] > 0 for over in overloads) and max(answered_p99) <= 1000
    errors_ok = errors == 0
    rounds = len(overloads)
    print(f"\n| overload, {rounds} rounds | min | median | max | target |")
    print("|---|---|---|---|---|")
    print(
        f"| goodput, % of the capacity around it | {min(shares):.0f} % | {median(shares):.0f} % "
        f"| {max(shares):.0f} % | >= 90 % in every round: {met(goodput_ok)} |"
    )
    print(
        f"| 200s per worker CPU second, % of capacity's | {min(efficiencies):.0f} % | {median(efficiencies):.0f} % "
        f"| {max(efficiencies):.0f} % | (where the rest went: work wasted, or CPU the machine did not give) |"
    )
    print(
        f"| refusal latency max, ms | {min(o['refused_max'] for o in overloads):.0f} "
        f"| {median([o['refused_max'] for o in overloads]):.0f} | {refused_max:.0f} "
        f"| every one <= 500 ms: {met(refusals_ok)} |"
    )
    print(
        f"| answered p99, ms | {min(answered_p99):.0f} | {median(answered_p99):.0f} | {max(answered_p99):.0f} "
        f"| <= 1,000 ms: {met(p99_ok)} |"
    )
    print(
        f"| timeouts, resets, other statuses | {min(o['errors'] for o in overloads)} "
        f"| {median([o['errors'] for o in overloads]):g} | {max(o['errors'] for o in overloads)} "
        f"| 0: {met(errors_ok)} |"
    )
    health, stored = slow["health"], slow["interpretation"]
    slow_ok = (
        health["ok"] == health["requests"]
        and stored["ok"] == stored["requests"]
        and max(health["max"], stored["max"]) <= 1000
        and slow["still_open"] == slow["sockets"]
    )
    print(
        f"\n| slow clients: {slow['sockets']} sockets sending a byte each 50 ms, held open {slow['seconds']:g} s "
        "| requests | answered 200 | p50 ms | p99 ms | max ms | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in (("health check", health), ("storing interpretation", stored)):
        print(
            f"| {name} | {row['requests']} | {row['ok']} | {row['p50']:.1f} | {row['p99']:.1f} | {row['max']:.1f} "
            f"| each <= 1,000 ms: {met(row['ok'] == row['requests'] and row['max'] <= 1000)} |"
        )
    print(
        f"\nSlow sockets still open and unanswered at the end: {slow['still_open']} of {slow['sockets']} "
        f"({slow['bytes_sent']:,} bytes dribbled)."
    )
    verdicts = {
        "no errors": errors_ok,
        "refusals <= 500 ms": refusals_ok,
        "goodput >= 90 %": goodput_ok,
        "answered p99 <= 1 s": p99_ok,
        "slow clients": slow_ok,
    }
    print("\nTargets: " + "; ".join(f"{name}: {met(ok)}" for name, ok in verdicts.items()) + ".", flush=True)
    return all(verdicts.values())


def run_mix(
    port: int,
    api: dict[str, str],
    session: dict[str, str],
    seeded: int,
    rates: list[float],
    seconds: float,
    warmup: float,
    workers: int,
    database: str,
) -> None:
    summary: list[tuple[float, dict]] = []
    for number, rate in enumerate(rates):
        offset = number * 10**6
        run_open_loop(
            HOST,
            port,
            plan_requests(int(warmup * rate), port, api, session, seeded, start_index=offset + 900_000),
            rate,
        )
        planned = plan_requests(int(seconds * rate), port, api, session, seeded, start_index=offset)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        results = run_open_loop(HOST, port, planned, rate)
        elapsed = time.perf_counter() - started
        overall = print_run(
            rate, seconds, warmup, workers, database, results, elapsed, (load_before, os.getloadavg()[0])
        )
        summary.append((rate, overall))
    print(f"\nThe mix, all requests, {database}, {seconds:g} s per rate (503 refusals count as errors here):\n")
    print("| requests/s sent | answered/s | p50 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|")
    for rate, overall in summary:
        print(
            f"| {rate:g} | {overall['answered_per_second']:.1f} | {overall['p50']:,.1f} | {overall['p99']:,.1f} "
            f"| {overall['max']:,.1f} | {overall['errors']:,} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="overload duration (and per mix rate)")
    parser.add_argument("--factor", type=float, default=3.0, help="overload arrival rate / measured capacity")
    parser.add_argument("--capacity-seconds", type=float, default=10.0, help="each capacity measurement")
    parser.add_argument("--rounds", type=int, default=3, help="overload rounds, each between two capacity measurements")
    parser.add_argument("--slow-seconds", type=float, default=8.0, help="below FRONT_HEADER_TIMEOUT (10 s)")
    parser.add_argument("--slow-sockets", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up, not measured")
    parser.add_argument("--database-url", default=None, help="default: a throw-away SQLite file")
    parser.add_argument("--mix-rates", default=None, help="also run the mix at these rates, e.g. 25,50")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (CI): 2 s capacity, 3 s overload, 2 s slow clients with 5 sockets",
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.capacity_seconds, args.slow_seconds, args.slow_sockets, args.warmup = 3.0, 2.0, 2.0, 5, 1.0
        args.rounds = 1
    work = Path(tempfile.mkdtemp(prefix="labservice-load-"))
    url = args.database_url or f"sqlite:///{work / 'load.sqlite'}"
    database = "SQLite" if args.database_url is None else "PostgreSQL" if "postgresql" in url else url.split(":")[0]
    try:
        api = bearer(create_api_key(url, ("interpret", "read")))
        username = create_user(url)
        with served(url, args.workers, work) as (port, serve_pid):
            seeded = 20 if args.smoke else SEEDED_PATIENTS
            seed_patients(port, api, seeded)
            loads = [os.getloadavg()[0]]
            cpu = CpuMeter(serve_pid)
            capacities = [
                measure_capacity(port, api, 2 * args.workers, args.capacity_seconds, args.warmup, 6_000_000, cpu)
            ]
            capacities[0]["cpu"] = cpu.since_last()
            overloads = []
            for number in range(args.rounds):  # capacity, overload, capacity, overload, ..., capacity
                loads.append(os.getloadavg()[0])
                over = overload(
                    port, api, args.factor * capacities[-1]["per_second"], args.seconds, 7_000_000 + 100_000 * number
                )
                over["cpu"] = cpu.since_last()
                overloads.append(over)
                loads.append(os.getloadavg()[0])
                after = measure_capacity(
                    port, api, 2 * args.workers, args.capacity_seconds, 0, 6_100_000 + 100_000 * number, cpu
                )
                after["cpu"] = cpu.since_last()
                capacities.append(after)
            loads.append(os.getloadavg()[0])
            slow = slow_clients(port, api, args.slow_sockets, args.slow_seconds)
            report(capacities, overloads, slow, args.workers, database, args.factor, loads)
            parts = [("capacity before round 1", capacities[0])]
            for number, (over, after) in enumerate(zip(overloads, capacities[1:], strict=True)):
                parts += [(f"overload round {number + 1}", over), (f"capacity after round {number + 1}", after)]
            print_cpu(parts, args.workers)
            if args.mix_rates:
                session = sign_in(f"http://{HOST}:{port}", username)
                rates = [float(rate) for rate in args.mix_rates.split(",")]
                run_mix(port, api, session, seeded, rates, args.seconds, args.warmup, args.workers, database)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
