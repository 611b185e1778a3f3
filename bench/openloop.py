"""An open-loop HTTP load generator for loopback benchmarks (asyncio, raw sockets, no third-party client).

Request i of the plan is due at start + i / rate. At its due time it is sent on a new connection
(`Connection: close`, as gunicorn's sync workers close anyway), whether or not earlier requests have been
answered: arrivals do not wait for the server, so a queue building up in the server shows as latency instead
of as fewer requests sent (no coordinated omission, unlike bench/loadgen.py's closed loop). Each result keeps
the due time, the actual send time and the last byte's time.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from dataclasses import dataclass

#: A request not answered within this many seconds counts as an error.
TIMEOUT_SECONDS = 30.0
#: The status recorded for a 503 that gunicorn's worker wrote (the app's queue-time check), as opposed to the
#: front's own 503 (no `Server: gunicorn` header): both are refusals.
APP_503 = "503 (app)"


@dataclass(frozen=True)
class Planned:
    kind: str
    payload: bytes  # the whole request: head and body


@dataclass(frozen=True)
class Result:
    kind: str
    status: int | str  # the HTTP status, or the error's name when there was no answer
    due: float
    sent: float
    done: float

    @property
    def latency_ms(self) -> float:
        """From the time the request was due to its last byte: what a caller arriving then would wait."""
        return (self.done - self.due) * 1e3

    @property
    def service_ms(self) -> float:
        """From the actual send (connect) to the last byte."""
        return (self.done - self.sent) * 1e3

    @property
    def lag_ms(self) -> float:
        """How late the client itself sent it."""
        return (self.sent - self.due) * 1e3


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class _Exchange(asyncio.Protocol):
    """One request on its own connection: the payload written on connect, the answer gathered until the server
    closes (a protocol, not streams: the generator shares the cores with the server it measures, and a stream
    pair costs about twice the CPU per request)."""

    def __init__(self, payload: bytes, answered: asyncio.Future[bytes]) -> None:
        self.payload = payload
        self.answered = answered
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.payload)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        return False  # the answer is complete: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answered.done():
            return
        if exc is not None:  # a reset, as a stream reader would raise it
            self.answered.set_exception(exc)
        else:
            self.answered.set_result(b"".join(self.chunks))


async def _exchange(host: str, port: int, payload: bytes) -> int | str:
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Exchange(payload, answered), host, port)
    try:
        data = await answered  # Connection: close: the answer ends with the connection
    finally:
        transport.close()
    head = data.split(b"\r\n", 1)[0].split()
    if len(head) < 2 or not head[1].isdigit():
        raise ConnectionError("no HTTP status line")
    if head[1] == b"503" and b"\r\nserver: gunicorn" in data.split(b"\r\n\r\n", 1)[0].lower():
        return APP_503  # refused by the app (labservice/serving/queue_time.py), not by the front before it
    return int(head[1])


async def _one(host: str, port: int, planned: Planned, due: float, results: list[Result]) -> None:
    sent = time.perf_counter()
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            status: int | str = await _exchange(host, port, planned.payload)
    except (TimeoutError, OSError, ConnectionError) as error:
        status = type(error).__name__
    results.append(Result(planned.kind, status, due, sent, time.perf_counter()))


async def _drive(host: str, port: int, plan: list[Planned], rate: float) -> list[Result]:
    results: list[Result] = []
    tasks = []
    start = time.perf_counter() + 0.05
    for index, planned in enumerate(plan):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(host, port, planned, due, results)))
    await asyncio.gather(*tasks)
    return results


def run_open_loop(host: str, port: int, plan: list[Planned], rate: float) -> list[Result]:
    """Send every planned request at `rate` per second, open loop; the results in completion order."""
    _raise_open_files_limit()  # a server that falls behind leaves thousands of connections open at once
    return _run(_drive(host, port, plan, rate))


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


async def _closed(host: str, port: int, plan: list[Planned], clients: int, seconds: float) -> list[Result]:
    results: list[Result] = []
    deadline = time.perf_counter() + seconds
    cursor = iter(range(len(plan)))

    async def client() -> None:
        for index in cursor:
            if time.perf_counter() >= deadline:
                return
            now = time.perf_counter()
            await _one(host, port, plan[index], now, results)

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def run_closed_loop(host: str, port: int, plan: list[Planned], clients: int, seconds: float) -> list[Result]:
    """`clients` callers, each sending the next planned request as soon as its last one is answered, for `seconds`
    (or until the plan runs out): how many requests per second the server completes when it is never idle."""
    _raise_open_files_limit()
    return _run(_closed(host, port, plan, clients, seconds))


def _run(coroutine):
    """asyncio.run, on uvloop where it is installed (a dependency of labservice on Linux and macOS): the
    generator shares the cores with the server it measures, so the less CPU it spends per request the better."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
