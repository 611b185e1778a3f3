"""Batch upload as a job, end to end: a wide CSV with patient ids POSTed over HTTP to gunicorn, a real
`labservice worker` beside it on the default SQLite queue, timed from the first byte sent to the job's `done`
(polled every 0.25 s), on SQLite and on PostgreSQL (a throw-away database, dropped at the end).

Reports per database: rows, file MB, the 202's answer time, upload-to-done seconds, rows per second, the worker's
CPU seconds (its own and its job's second process; not the PostgreSQL server's), its peak RSS (VmHWM of the
worker process, where the job stores; the second process's is not included) and the rows stored/rejected from the
batch resource, the status polls that failed (503 or a cut connection: polled again), with the machine's
1-minute load average at the start and the end (the wall time on a shared
machine depends on it; the CPU seconds much less). Target (issue 12 item 1):
10^6 rows stored within 300 s on this 2-core machine, memory bounded by the chunk (BATCH_CHUNK_ROWS).
Run by bench/batch.py (`--upload-only` for this part alone).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TARGET_SECONDS = 300.0
POLL_SECONDS = 0.25
DEFAULT_POSTGRES = os.environ.get("LABSERVICE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
UPLOAD_TABLE_HEADER = (
    "| database | rows | file MB | 202 after s | upload to done s | rows/s | worker CPU s | worker peak MB | stored "
    "| rejected | load avg (start / end) | failed polls | done ≤ 300 s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
DATABASES = ("SQLite", "PostgreSQL")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def postgresql_database(base: str):
    """A throw-away PostgreSQL database (None when the server is unreachable), dropped at the end."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"jobs_bench_{uuid.uuid4().hex[:12]}"
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


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def service(database_url: str, work: Path):
    """gunicorn (2 workers) and `labservice worker` on one SQLite queue file: yields (port, worker process)."""
    from credentials import create_api_key

    token = create_api_key(database_url)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LABSERVICE_DATABASE_URL": database_url,
        "LABSERVICE_INSTANCE_PATH": str(work),
        "LABSERVICE_BATCH_DIRECTORY": str(work / "batches"),
        "LABSERVICE_JOB_QUEUE": f"sqlite:///{work / 'jobs.sqlite3'}",
        "LABSERVICE_RATE_LIMIT": "off",
        "LABSERVICE_RATE_LIMIT_UPLOADS": "off",
    }
    log = (work / "service.log").open("w")
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "-w", "2", "-b", f"{HOST}:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "labservice.cli", "worker"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start; see {work / 'service.log'}") from None
                time.sleep(0.2)
        yield port, worker, token
    finally:
        _stop(worker, signal.SIGINT)
        _stop(server)
        log.close()


def _post_file(port: int, token: str, path: Path) -> tuple[int, dict, float]:
    """Stream the file as multipart/form-data (never whole in memory): (status, body, seconds to the answer)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)
    connection = http.client.HTTPConnection(HOST, port, timeout=600)
    started = time.monotonic()
    connection.putrequest("POST", "/api/v1/batches")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    connection.send(head)
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            connection.send(block)
    connection.send(tail)
    answer = connection.getresponse()
    body = json.loads(answer.read() or b"{}")
    connection.close()
    return answer.status, body, time.monotonic() - started


def _get(port: int, token: str, path: str) -> dict:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


def _peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and of its children it has reaped (the job's second process ends with the job):
    user + system, from /proc/PID/stat. On a shared machine this, not the wall time, is what the job cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def measure(
    database: str, database_url: str, csv_path: Path, rows: int, work: Path, max_seconds: float = 3 * TARGET_SECONDS
) -> dict:
    with service(database_url, work) as (port, worker, token):
        load_start = os.getloadavg()[0]
        cpu_start = _cpu_seconds(worker.pid) or 0.0
        started = time.monotonic()
        status, body, answered = _post_file(port, token, csv_path)
        if status not in (200, 202):
            raise RuntimeError(f"upload answered {status}: {body}")
        location = body["links"]["self"]
        failed_polls = 0
        while body.get("status") not in ("done", "failed"):
            time.sleep(POLL_SECONDS)
            try:
                body = _get(port, token, location)
            except OSError:  # a 503 or a cut connection: a client polls again (counted in the table)
                failed_polls += 1
            if time.monotonic() - started > max_seconds:
                raise RuntimeError(f"not done after {max_seconds:.0f} s: {body}")
        seconds = time.monotonic() - started
        peak = _peak_mb(worker.pid)
        cpu_end = _cpu_seconds(worker.pid)
        load_end = os.getloadavg()[0]
    return {
        "database": database,
        "rows": rows,
        "file_mb": csv_path.stat().st_size / 1e6,
        "answered": answered,
        "seconds": seconds,
        "status": body["status"],
        "peak_mb": peak,
        "cpu_s": None if cpu_end is None else cpu_end - cpu_start,
        "load": (load_start, load_end),
        "failed_polls": failed_polls,
        "stored": body.get("stored"),
        "rejected": body.get("rejected"),
        "errors": body.get("errors"),
    }


def row(result: dict) -> str:
    peak = "n/a" if result["peak_mb"] is None else f"{result['peak_mb']:.0f}"
    ok = "yes" if result["status"] == "done" and result["seconds"] <= TARGET_SECONDS else "NO"
    cpu = "n/a" if result["cpu_s"] is None else f"{result['cpu_s']:.0f}"
    load = f"{result['load'][0]:.1f} / {result['load'][1]:.1f}"
    return (
        f"| {result['database']} | {result['rows']:,} | {result['file_mb']:.1f} | {result['answered']:.2f} "
        f"| {result['seconds']:.1f} | {result['rows'] / result['seconds']:,.0f} | {cpu} | {peak} "
        f"| {result['stored']} | {result['rejected']} | {load} | {result['failed_polls']} | {ok} |"
    )


def run(
    sizes: tuple[int, ...],
    write_csv,
    postgres: str | None = DEFAULT_POSTGRES,
    databases: tuple[str, ...] = DATABASES,
    max_seconds: float = 3 * TARGET_SECONDS,
) -> list[str]:
    """Measure each size on SQLite and PostgreSQL; print the table; return the failures."""
    failures: list[str] = []
    print("Batch upload as a job: POST over HTTP -> labservice worker (SQLite queue) -> done, per database")
    print(UPLOAD_TABLE_HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="labservice-bench-upload-") as tmp:
        folder = Path(tmp)
        for rows in sizes:
            csv_path = folder / f"upload-{rows}.csv"
            write_csv(csv_path, rows)
            for database in databases:
                work = folder / f"{database.lower()}-{rows}"
                work.mkdir()
                if database == "SQLite":
                    result = measure(
                        database, f"sqlite:///{work / 'labservice.sqlite'}", csv_path, rows, work, max_seconds
                    )
                else:
                    if postgres is None:
                        continue
                    with postgresql_database(postgres) as url:
                        if url is None:
                            print("| PostgreSQL | not reachable |")
                            continue
                        result = measure(database, url, csv_path, rows, work, max_seconds)
                print(row(result), flush=True)
                if result["status"] != "done":
                    failures.append(f"{database} {rows} rows: job {result['status']}: {result['errors']}")
    return failures
