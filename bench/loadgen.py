"""A small closed-loop HTTP load generator for loopback benchmarks (no third-party client).

Each client process opens a connection per request (gunicorn's sync worker closes it anyway),
sends prebuilt request bytes, reads the response by Content-Length, and records latency.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import time
from dataclasses import dataclass


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    body: bytes = b"",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if body:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _one(host: str, port: int, request: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while length is not None and len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        if length is None:
            while chunk := sock.recv(65536):
                rest += chunk
    return status, time.perf_counter() - start


def _client(host: str, port: int, requests: list[bytes], seconds: float, out: mp.Queue, start: int = 0) -> None:
    latencies, statuses = [], {}
    deadline = time.perf_counter() + seconds
    i = start
    while time.perf_counter() < deadline:
        status, latency = _one(host, port, requests[i % len(requests)])
        i += 1
        latencies.append(latency)
        statuses[status] = statuses.get(status, 0) + 1
    out.put((latencies, statuses))


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run_load(host: str, port: int, requests: list[bytes], seconds: float = 10.0, clients: int = 4) -> LoadResult:
    """Drive the server with `clients` closed-loop processes for `seconds`."""
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    # Each client starts at its own place in `requests`, so a pool of distinct requests (storing CBCs that must not
    # be duplicates) is shared out rather than sent once per client.
    procs = [
        ctx.Process(target=_client, args=(host, port, requests, seconds, queue, k * len(requests) // clients))
        for k in range(clients)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses: dict[int, int] = {}
    for _, st in results:
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    p99 = latencies[min(len(latencies) - 1, int(0.99 * (len(latencies) - 1)))] if latencies else float("nan")
    return LoadResult(
        len(latencies), elapsed, statuses, statistics.median(latencies) * 1e3 if latencies else float("nan"), p99 * 1e3
    )
