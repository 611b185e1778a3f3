"""gunicorn settings: JSON log lines with no URLs (labservice.serving.log_lines).

Read by gunicorn from `gunicorn.conf.py` in the working directory (`python3 tasks.py run`, `gunicorn wsgi:app`),
and by `labservice serve` as `-c python:labservice.serving.gunicorn_conf`.

- gunicorn's own records and the service's go to stderr as JSON lines; the service writes one line per request
  (route template, status, duration, principal, address, request id), so gunicorn's access log stays off.
- `--log-level` applies to the service's loggers too: `--log-level warning` leaves out the request lines.
- Should someone enable gunicorn's access log (`--access-logfile`), its lines name the route template the app
  left in the WSGI environ (`GET /api/v1/patients/<path:patient_id>/results`), never the request line, path,
  query string or referrer, which can hold patient ids.
"""

import os
import shutil
import tempfile

# Before anything imports prometheus_client (it reads this once, at import): every worker writes its metrics
# into files here and a scrape of /metrics sums them (labservice.serving.metrics). A fresh directory per start.
# MADE_METRICS_DIR: the directory this configuration made (removed when gunicorn exits), or None when one was given.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    MADE_METRICS_DIR: str | None = tempfile.mkdtemp(prefix="labservice-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(MADE_METRICS_DIR)
else:
    MADE_METRICS_DIR = None

from labservice.serving.log_lines import (
    GUNICORN_ACCESS_FORMAT,
    apply_log_level,
    enable_access_log,
    gunicorn_logconfig,
)

logconfig_dict = gunicorn_logconfig()
access_log_format = GUNICORN_ACCESS_FORMAT


def on_starting(server) -> None:
    apply_log_level(server.cfg.loglevel)
    enable_access_log(server.cfg.accesslog)


def child_exit(server, worker) -> None:
    from labservice.serving.metrics import worker_exited

    worker_exited(worker.pid)


def on_exit(server) -> None:
    """The metrics files die with the server: a directory this configuration made is removed (one given by
    PROMETHEUS_MULTIPROC_DIR, as `labservice serve` gives it, is its owner's to remove)."""
    if MADE_METRICS_DIR is not None:
        shutil.rmtree(MADE_METRICS_DIR, ignore_errors=True)
