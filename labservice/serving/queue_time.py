"""Load shedding by queue time: a request that waited too long for a worker is refused before any work.

The front of the service stamps each request with the time it arrived, in an `X-Request-Start` header:
`labservice serve` (and `python3 tasks.py run`) start a buffering front (labservice.serving.front) that
stamps it once the whole request has been read; a proxy in front of gunicorn can stamp it too (nginx:
`proxy_set_header X-Request-Start "t=${msec}";`, Heroku's router does it by itself). Accepted forms, with or
without the `t=` prefix: microseconds (`t=1733425200123456`), milliseconds (`1733425200123`) or seconds with a
fraction (`t=1733425200.123`), all since the Unix epoch.

When a worker picks the request up more than QUEUE_TIME_BUDGET_MS after that stamp, the caller has been
waiting for longer than the service can make good: the answer is at once a 503 problem+json with
`Retry-After`, written here, outside Flask, before authentication, the database and any parsing. Requests
without the header (plain gunicorn with no proxy: the wait in the kernel's listen queue cannot be seen) and
with a stamp in the future (a clock step between the machines) are served, and so is `/livez` always (the
liveness probe: refusing it under load would get a busy, healthy process restarted). Each refusal counts in
`labservice_shed_requests_total` (labservice.serving.metrics).

The same wrapper takes the client's address from the front: over the front's private socket every peer looks
the same, so the front names the client in `X-Labservice-Peer`, believed only next to the secret the front
gave its own gunicorn (`LABSERVICE_FRONT_SECRET`, set by the front for its child process, never configured).
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

#: The header a front or proxy stamps with the request's arrival time.
REQUEST_START_ENVIRON = "HTTP_X_REQUEST_START"
#: Paths never refused by queue time: the liveness probe (labservice.api.health) says the process answers, and
#: refusing it under load would get a busy but healthy process restarted.
NEVER_SHED = frozenset({"/livez"})
#: Seconds a refused caller is asked to wait (Retry-After).
SHED_RETRY_AFTER = 1
#: The environment variable through which the front gives its gunicorn the secret of its peer header.
FRONT_SECRET_VARIABLE = "LABSERVICE_FRONT_SECRET"
FRONT_SECRET_ENVIRON = "HTTP_X_LABSERVICE_FRONT"
FRONT_PEER_ENVIRON = "HTTP_X_LABSERVICE_PEER"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def parse_request_start(value: str) -> float | None:
    """Seconds since the epoch from an `X-Request-Start` value (`t=` µs, ms or s), or None if unreadable."""
    text = value.strip()
    if text.startswith("t="):
        text = text[2:]
    try:
        number = float(text)
    except ValueError:
        return None
    if number != number or number <= 0:  # NaN, zero, negative
        return None
    if number >= 1e14:  # microseconds (nginx/New Relic `t=` form)
        return number / 1e6
    if number >= 1e11:  # milliseconds (Heroku)
        return number / 1e3
    return number  # seconds, with a fraction (nginx ${msec})


def overload_body(waited_ms: float, budget_ms: int) -> bytes:
    problem = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": (
            f"The service is overloaded: this request waited {waited_ms:.0f} ms for a worker, more than the "
            f"{budget_ms} ms it may wait. Retry after {SHED_RETRY_AFTER} s."
        ),
        "errors": {},
    }
    return json.dumps(problem).encode()


def overload_headers(body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Retry-After", str(SHED_RETRY_AFTER)),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]


class QueueTimeEdge:
    """WSGI wrapper, outermost: the front's peer address, then the queue-time check, then the app."""

    def __init__(self, app: WSGIApp, budget_ms: int, front_secret: str | None = None) -> None:
        self.app = app
        self.budget_ms = budget_ms
        self.front_secret = front_secret if front_secret is not None else os.environ.get(FRONT_SECRET_VARIABLE, "")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self._take_front_peer(environ)
        stamp = environ.get(REQUEST_START_ENVIRON)
        if stamp and environ.get("PATH_INFO") not in NEVER_SHED:
            started = parse_request_start(stamp)
            if started is not None:
                waited_ms = (time.time() - started) * 1e3
                if waited_ms > self.budget_ms:
                    # Imported here: the front imports this module and has no metrics of its own.
                    from labservice.serving.metrics import count_shed

                    count_shed()  # labservice_shed_requests_total at /metrics
                    body = overload_body(waited_ms, self.budget_ms)
                    start_response("503 Service Unavailable", overload_headers(body))
                    return [body]
        return self.app(environ, start_response)

    def _take_front_peer(self, environ: dict[str, Any]) -> None:
        secret = environ.pop(FRONT_SECRET_ENVIRON, None)
        peer = environ.pop(FRONT_PEER_ENVIRON, None)
        if self.front_secret and secret and peer and hmac.compare_digest(secret, self.front_secret):
            environ["REMOTE_ADDR"] = peer
