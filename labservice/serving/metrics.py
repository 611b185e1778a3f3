"""Prometheus metrics (issue 14 item 4), served at `GET /metrics` to a key with the `metrics` scope.

What is measured:
- `labservice_http_requests_total{method,route,status}`: every answered request, by route template
  (`/api/v1/patients/<path:patient_id>/results`, never the path as sent: paths can hold patient ids);
- `labservice_http_request_duration_seconds{method,route}`: a latency histogram, by route template;
- `labservice_shed_requests_total`: requests the app refused at once because they had waited too long in the
  queue (labservice.serving.queue_time);
- `labservice_front_refused_requests_total{status,reason}`: requests the buffering front (labservice.serving.front)
  answered itself without passing them to a worker: 503 for overload (reason `queue_time`: it would wait, or
  waited, past the front's share of the budget; `queue_full`: FRONT_MAX_WAITING already waiting; `connections`:
  FRONT_MAX_CONNECTIONS open; `unavailable`: gunicorn not reachable, starting or stopping), 408 `too_slow`,
  400 `bad_request`, 413 `too_large`, 431 `headers_too_large`, 501 `not_implemented`, 502 `no_answer`. All
  requests refused for overload: this counter's 503s plus labservice_shed_requests_total;
- `labservice_ruleset_info{version}` (always 1) and any live gauge a part of the service registers with
  `add_live_gauge` (the job queue's depth), read at scrape time.

Under gunicorn each worker is its own process, so the counters live in prometheus-client's multiprocess
files: the front (which counts its refusals in a file of its own there) or else the gunicorn configuration
(labservice.serving.gunicorn_conf) sets PROMETHEUS_MULTIPROC_DIR to a fresh directory before anything imports
prometheus_client (which reads the variable once, at import), and gunicorn's configuration tells
prometheus-client when a worker dies; a scrape then sums the front and every worker.
Without that variable (the tests, `flask run`) the counters are this process's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds; the interpretation of one CBC takes about a millisecond, a storing request a few, an upload more.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

disable_created_metrics()  # no *_created samples: Prometheus does not need them

#: This process's metrics (a registry of its own, so that several apps in one process share one set).
REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "labservice_http_requests",
    "Requests answered, by method, route template and status",
    ("method", "route", "status"),
    registry=REGISTRY,
)
LATENCY = Histogram(
    "labservice_http_request_duration_seconds",
    "Time from the request reaching the app to its answer, by method and route template",
    ("method", "route"),
    buckets=BUCKETS,
    registry=REGISTRY,
)
SHED = Counter(
    "labservice_shed_requests",
    "Requests refused with 503 before any work because they waited longer than the queue-time budget",
    registry=REGISTRY,
)

FRONT_REFUSED = Counter(
    "labservice_front_refused_requests",
    "Requests the buffering front answered itself without passing them to a worker, by status and reason",
    ("status", "reason"),
    registry=REGISTRY,
)

#: name -> (help, function returning the value now); read at each scrape, in the scraping process.
_LIVE_GAUGES: dict[str, tuple[str, Callable[[], float | None]]] = {}


def observe_request(method: str, route: str, status: int, seconds: float | None) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    if seconds is not None:
        LATENCY.labels(method, route).observe(seconds)


def count_shed() -> None:
    SHED.inc()


def count_front_refusal(status: int, reason: str) -> None:
    FRONT_REFUSED.labels(str(status), reason).inc()


def add_live_gauge(name: str, help_text: str, read: Callable[[], float | None]) -> None:
    """A gauge whose value is read when /metrics is scraped (e.g. the job queue's depth); None leaves it out."""
    _LIVE_GAUGES[name] = (help_text, read)


class _LiveCollector(Collector):
    def __init__(self, ruleset_version: str) -> None:
        self.ruleset_version = ruleset_version

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "labservice_ruleset_info", "The rule tables this service answers with (always 1)", labels=["version"]
        )
        info.add_metric([self.ruleset_version], 1)
        yield info
        for name, (help_text, read) in sorted(_LIVE_GAUGES.items()):
            try:
                value = read()
            except Exception:  # a gauge that cannot be read now is left out, never a failed scrape
                value = None
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=value)


def render(ruleset_version: str) -> tuple[bytes, str]:
    """The exposition text of every worker's counters (multiprocess mode) or this process's, plus the live gauges."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    live = CollectorRegistry()
    live.register(_LiveCollector(ruleset_version))
    return text + generate_latest(live), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live-gauge files (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
