"""The job queue batch uploads wait in: huey (a maintained task-queue library), on SQLite by default (no server
needed: a file in the instance folder) or on Redis (several machines share one queue), chosen by JOB_QUEUE.

The web workers only enqueue (`JobQueue.enqueue`); `labservice worker` consumes (`run_worker`). A job's state is
in the database (labservice.store.batch_jobs), not in the queue: the queue only says "run job <id>", and a
message that runs twice, or a job whose worker died with its message, is harmless (the worker's start-up and a
periodic task every minute queue again the jobs nobody runs: `requeue_stale`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_app_context
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab

QUEUE_EXTENSION = "labservice.job_queue"
#: Seconds an idle consumer waits at most between two looks at the queue (huey backs off up to this).
MAX_POLL_DELAY = 1.0

log = logging.getLogger(__name__)

#: The app a worker process runs jobs in (set by run_worker; a web request's immediate job uses its own).
_WORKER_APP: Flask | None = None


def _in_app(function, *args: Any) -> Any:
    if has_app_context():  # an immediate job, inside the upload request (its audit trail notes the patients)
        return function(*args)
    if _WORKER_APP is None:
        raise RuntimeError("a job ran outside `labservice worker` with no app")
    with _WORKER_APP.app_context():
        return function(*args)


def _run_batch_job(batch_id: str) -> None:
    from labservice.services.batch_jobs import run_job

    _in_app(run_job, batch_id)


def _requeue_stale_jobs() -> None:
    from labservice.services.batch_jobs import requeue_stale

    _in_app(requeue_stale, False)


class JobQueue:
    """A huey instance with this service's two tasks registered on it."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._run = huey.task(name="labservice.run_batch_job")(_run_batch_job)
        huey.periodic_task(crontab(minute="*"), name="labservice.requeue_stale_jobs")(_requeue_stale_jobs)

    @property
    def immediate(self) -> bool:
        return bool(self.huey.immediate)

    def waiting(self) -> int | None:
        """Messages waiting in the queue (None when the queue does not answer)."""
        try:
            return int(self.huey.pending_count())
        except Exception:  # any failure to reach the queue's storage means: it does not answer
            return None

    def answers(self) -> bool:
        """For /readyz: whether uploads can be queued now (always, in immediate mode)."""
        return self.immediate or self.waiting() is not None

    def enqueue(self, batch_id: str) -> None:
        """Queue the job (in immediate mode: run it now, in this request)."""
        self._run(batch_id)


def make_queue(setting: str, name: str, instance_path: str | Path) -> JobQueue:
    """The queue JOB_QUEUE names: sqlite (default file), sqlite:///<path>, redis://..., or immediate."""
    setting = setting.strip() or "sqlite"
    if setting == "immediate":
        return JobQueue(MemoryHuey(name, immediate=True, results=False))
    if setting.startswith(("redis://", "rediss://", "unix://")):
        return JobQueue(RedisHuey(name, url=setting, results=False))
    if setting == "sqlite" or setting.startswith("sqlite:///"):
        path = Path(setting[len("sqlite:///") :]) if setting != "sqlite" else Path(instance_path) / "jobs.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JobQueue(SqliteHuey(name, filename=str(path), results=False))
    raise ValueError(f"JOB_QUEUE must be sqlite, sqlite:///<path>, redis://... or immediate, not {setting!r}")


def register_job_queue(app: Flask) -> None:
    config = app.config
    app.extensions[QUEUE_EXTENSION] = make_queue(config["JOB_QUEUE"], config["JOB_QUEUE_NAME"], app.instance_path)


def current_queue(app: Flask | None = None) -> JobQueue:
    return (app or current_app).extensions[QUEUE_EXTENSION]


def run_worker(app: Flask, workers: int | None = None) -> int:
    """Consume the app's job queue until SIGINT/SIGTERM (the `labservice worker` command)."""
    from labservice.services.batch_jobs import requeue_stale

    global _WORKER_APP
    _WORKER_APP = app
    queue = current_queue(app)
    if queue.immediate:
        log.error("JOB_QUEUE is immediate: jobs run inside the upload requests, there is nothing to consume")
        return 2
    with app.app_context():
        requeued = requeue_stale(True)  # jobs queued or left running by a worker that died
    if requeued:
        log.warning("queued again %d job(s) no live worker was running: %s", len(requeued), ", ".join(requeued))
    consumer = queue.huey.create_consumer(
        workers=workers or app.config["JOB_WORKERS"], worker_type="thread", periodic=True, max_delay=MAX_POLL_DELAY
    )
    consumer.run()
    return 0
