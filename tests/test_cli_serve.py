"""`labservice serve` for real (labservice.cli.serve and run_beside): the front, gunicorn behind it and the batch
job worker beside it start together, the worker runs an uploaded batch's job, and SIGTERM stops every one of them.

A temporary SQLite database and job queue, free ports; every wait is a bounded poll, never a fixed sleep.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.faults.servers import bearer, create_api_key, free_port, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Seconds at most for the server to answer, for the job to finish and for the processes to stop.
START_TIMEOUT = 90.0
JOB_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
ROWS = 30


def parents() -> dict[int, int]:
    """{pid: parent pid} of every process now (Linux /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    found[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue  # ended meanwhile
    return found


def descendants(pid: int) -> set[int]:
    table = parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def patients_csv(rows: int) -> bytes:
    lines = ["patient_id,collected_at,sex,age,PLT,HGB (g/dL),WBC"]
    lines += [f"SERVE{i:04d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,40,{120 + i},13.5,5.0" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, str, Path]]:
    """`labservice serve -w 1` on a free port with its own SQLite database and queue file: (process, base URL,
    API key, log). Whatever happens, its process group (a session of its own) is killed at the end."""
    url = f"sqlite:///{tmp_path / 'serve.sqlite'}"
    key = create_api_key(url, "serve-tests")
    assert key is not None
    port = free_port()
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "LABSERVICE_BATCH_DIRECTORY": str(tmp_path / "batches"),
        "LABSERVICE_RATE_LIMIT": "off",
        "LABSERVICE_JOB_QUEUE": f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        "LABSERVICE_JOB_QUEUE_NAME": f"serve-{uuid.uuid4().hex[:8]}",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "labservice.cli", "serve", "-w", "1", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", key, log
    finally:
        if process.poll() is None or any(alive(pid) for pid in descendants(process.pid)):
            os.killpg(process.pid, signal.SIGKILL)  # this test's own session: the server and what it started
            process.wait()


def test_serve_starts_front_gunicorn_and_job_worker_and_sigterm_stops_them_all(serve_process) -> None:
    process, base, key, log = serve_process

    def healthy() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            return requests.get(f"{base}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or a worker still booting
            return False

    wait_until(healthy, START_TIMEOUT, "labservice serve to answer /healthz", interval=0.2)

    # Its children: the front (and under it gunicorn's master and worker) and the job worker, side by side.
    def family_started() -> dict[int, str]:
        found = {pid: command_line(pid) for pid in descendants(process.pid)}
        kinds = " | ".join(found.values())
        started = "labservice.serving.front" in kinds and "labservice.cli worker" in kinds
        return found if started and sum("gunicorn" in line for line in found.values()) >= 2 else {}

    family = wait_until(family_started, START_TIMEOUT, "the front, gunicorn and the job worker")
    job_workers = [pid for pid, line in family.items() if "labservice.cli worker" in line]
    assert len(job_workers) == 1 and os.getppid() != job_workers[0]

    # An upload is a job in the queue file only the worker that serve started consumes: it finishes it.
    auth = bearer(key)
    data = patients_csv(ROWS)
    answer = requests.post(
        f"{base}/api/v1/batches", files={"file": ("serve.csv", io.BytesIO(data), "text/csv")}, headers=auth, timeout=60
    )
    assert answer.status_code == 202, answer.text
    location = answer.headers["Location"]

    def finished() -> dict:
        state = requests.get(f"{base}{location}", headers=auth, timeout=30).json()
        return state if state["status"] in ("done", "failed") else {}

    done = wait_until(finished, JOB_TIMEOUT, "the batch job to finish", interval=0.2)
    assert done["status"] == "done", done
    assert (done["rows_read"], done["interpreted"], done["stored"], done["rejected"]) == (ROWS, ROWS, ROWS, 0)
    assert all(alive(pid) for pid in family), "a child ended before the server was told to stop"

    # SIGTERM to `labservice serve`: it stops the front (which stops gunicorn) and the worker, and exits 0.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_TIMEOUT) == 0, log.read_text(errors="replace")[-3000:]
    wait_until(lambda: not any(alive(pid) for pid in family), STOP_TIMEOUT, "every child of labservice serve to end")
