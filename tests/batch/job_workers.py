"""A real batch job worker (`labservice worker`) as a child process, and polling with a bounded deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask

#: Seconds a test waits at most for a worker to reach a state (a bound, not a sleep: polling stops at once).
DEADLINE_SECONDS = 90.0
POLL_SECONDS = 0.02

T = TypeVar("T")


def worker_environment(app: Flask, **extra: str) -> dict[str, str]:
    """The environment of a worker serving the same database, batch directory and queue as `app`."""
    config = app.config
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": config["DATABASE_URL"],
        "LABSERVICE_BATCH_DIRECTORY": config["BATCH_DIRECTORY"],
        "LABSERVICE_INSTANCE_PATH": config["INSTANCE_PATH"],
        "LABSERVICE_JOB_QUEUE": config["JOB_QUEUE"],
        "LABSERVICE_JOB_QUEUE_NAME": config["JOB_QUEUE_NAME"],
        "LABSERVICE_BATCH_CHUNK_ROWS": str(config["BATCH_CHUNK_ROWS"]),
        "LABSERVICE_BATCH_JOB_LEASE_SECONDS": str(config["BATCH_JOB_LEASE_SECONDS"]),
    }
    env.update(extra)
    return env


def start_worker(app: Flask, log: Path) -> subprocess.Popen:
    """`labservice worker` for `app`'s queue, its output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "labservice.cli", "worker"],
            env=worker_environment(app),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL, and reap it (a zombie would still look alive to the next worker)."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def poll(read: Callable[[], T], until: Callable[[T], bool], what: str, log: Path | None = None) -> T:
    """Read until `until` holds, at most DEADLINE_SECONDS; fail naming `what` (and the worker's log) otherwise."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}\n{tail}")
        time.sleep(POLL_SECONDS)  # between two reads of a bounded poll, not a wait for an outcome


def job_state(client: Any, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/batches/{batch_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()
