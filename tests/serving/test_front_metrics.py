"""The front's own refusals at /metrics, under a real `labservice serve` (labservice.serving.front and .metrics).

The front answers some requests itself, never passing them to a worker: 503 when FRONT_MAX_CONNECTIONS
connections are open, 408 when the request line and headers do not arrive within FRONT_HEADER_TIMEOUT. It
counts each in its own prometheus-client multiprocess file, in the directory it gives gunicorn, so a scrape
answered by a worker sums them with the workers' counters: labservice_front_refused_requests_total{status,
reason}. Every wait here is a bounded poll or a socket timeout, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.faults.servers import free_port, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: Connections the front holds at most in this test; one more is refused with 503.
MAX_CONNECTIONS = 3
#: Seconds the front waits for a request's head here (then 408); long enough for the connection test to run.
HEADER_TIMEOUT = 8
START_TIMEOUT = 90.0


def metrics_key(url: str) -> str:
    """A key with the `metrics` scope, made with the real command."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labservice.cli",
            "create-key",
            "--name",
            f"prometheus-{uuid.uuid4().hex[:6]}",
            "--scopes",
            "metrics",
            "--url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """`labservice serve -w 1` (no job worker) holding at most MAX_CONNECTIONS connections; (port, metrics key)."""
    work = tmp_path_factory.mktemp("front-metrics")
    url = f"sqlite:///{work / 'metrics.sqlite'}"
    key = metrics_key(url)
    port = free_port()
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_INSTANCE_PATH": str(work / "instance"),
        "LABSERVICE_BATCH_DIRECTORY": str(work / "batches"),
        "LABSERVICE_RATE_LIMIT": "off",
        "LABSERVICE_FRONT_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "LABSERVICE_FRONT_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the front makes its own
    log = work / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "labservice.cli", "serve", "-w", "1", "--no-job-worker", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or a worker still booting
                return False

        wait_until(healthy, START_TIMEOUT, "labservice serve to answer /healthz", interval=0.2)
        yield port, key
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def front_refusals(port: int, key: str) -> dict[str, float]:
    """{'{reason="…",status="…"}': count} of labservice_front_refused_requests_total in one scrape."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    found = {}
    for line in response.text.splitlines():
        match = re.fullmatch(r"labservice_front_refused_requests_total(\{.*\}) (\S+)", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def answer_of(sock: socket.socket) -> bytes:
    """Everything the front sends on `sock` until it closes it (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_the_fronts_refusals_are_counted_at_metrics(served: tuple[int, str]) -> None:
    port, key = served
    before = front_refusals(port, key)
    # MAX_CONNECTIONS clients that send half a request line and then nothing: each holds a connection.
    holders = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(MAX_CONNECTIONS)]
    for sock in holders:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    refused = 0

    def one_more_is_refused() -> bool:
        nonlocal refused
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = answer_of(sock)
        if answer.startswith(b"HTTP/1.1 503"):
            assert b"too many open connections" in answer and b"Retry-After: 1" in answer, answer
            refused += 1
            return True
        return False  # answered 200: the front had not taken every holder's connection yet

    wait_until(one_more_is_refused, 30, "a connection past FRONT_MAX_CONNECTIONS to be refused")
    # The holders' heads never end: each is answered 408 after FRONT_HEADER_TIMEOUT and closed.
    for sock in holders:
        with sock:
            assert answer_of(sock).startswith(b"HTTP/1.1 408")
    after = front_refusals(port, key)

    def grew(labels: str) -> float:
        return after.get(labels, 0.0) - before.get(labels, 0.0)

    assert grew('{reason="connections",status="503"}') == refused
    assert grew('{reason="too_slow",status="408"}') == MAX_CONNECTIONS
