"""The buffering front: slow clients cannot hold a worker, and work that cannot be done in time is refused.

`labservice serve` and `python3 tasks.py run` start this process on the public address; it starts gunicorn as
its child on a private Unix socket (in a temporary directory only this user can enter) and forwards to it.

- **Slow clients.** gunicorn's sync workers read a request themselves, so a client that sends a byte every
  second holds a worker for as long as it likes (two such clients stopped the service). The front reads each
  request whole first, in one asyncio loop where a slow connection costs a few kilobytes and no worker: the
  request line and headers must arrive within FRONT_HEADER_TIMEOUT seconds (408 otherwise), the body may not
  stall for longer than FRONT_BODY_TIMEOUT seconds at a time, and at most FRONT_MAX_CONNECTIONS connections
  are open (the next ones are refused with 503). A body above 1 MiB is spooled to a temporary file.
- **A bounded queue, refused by queue time.** A complete request is stamped `X-Request-Start: t=<µs>` and
  waits for one of FRONT_UPSTREAM_CONNECTIONS slots (default twice the workers: gunicorn's listen queue holds
  at most one request per worker, so a worker never waits for the front between two requests). One that has
  not had a slot within three quarters of QUEUE_TIME_BUDGET_MS (the rest is for gunicorn's queue), that would
  not have one in time at the rate slots free up (the running mean time behind the front), or that arrives
  when FRONT_MAX_WAITING requests already wait, is answered at once with 503 problem+json and `Retry-After`;
  the
  app refuses the same way a request that waited past the budget after the front let it go
  (labservice.serving.queue_time). Refusing costs no worker time, so the workers stay busy with requests
  that can still be answered in time and the answered ones keep a short latency.
- **Counted.** Each request the front answers itself (503 overloaded, 408, 400, 413, 431, 501, 502) is counted in
  `labservice_front_refused_requests_total{status,reason}` (labservice.serving.metrics), in a file of the
  front's own in the prometheus-client multiprocess directory it makes and gives gunicorn: a scrape of
  /metrics, answered by any worker, sums it with the workers' counters.
- **The liveness probe** (`/livez`) never waits for a slot and is never refused by queue time: refusing it
  under load would get a busy, healthy process restarted.
- **Slow readers cannot hold a worker either.** The answer is read from the worker as fast as it comes, into
  memory and past 1 MiB a temporary file, and sent on to the client from there.
- **One request per connection.** The front sends `Connection: close` on; answers are relayed as they come
  (streamed downloads included). A chunked request body is read and forwarded with a Content-Length;
  `Expect: 100-continue` is answered by the front.
- **The client's address.** The front names the client in `X-Labservice-Peer` next to a secret it gave its
  gunicorn in LABSERVICE_FRONT_SECRET; headers of those names from clients are dropped. TRUSTED_PROXIES then
  applies to that address as it would to gunicorn's peer.

SIGTERM or SIGINT stops accepting and passes the signal on to gunicorn (which finishes its requests); SIGHUP
is passed on (gunicorn reloads its workers). The front exits with gunicorn's exit code when gunicorn exits.

Usage: python -m labservice.serving.front [--bind HOST:PORT] -- gunicorn [gunicorn options] APP
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labservice.config import load_settings
from labservice.serving.queue_time import FRONT_SECRET_VARIABLE, NEVER_SHED, SHED_RETRY_AFTER

#: prometheus-client's multiprocess directory variable (labservice.serving.metrics; not imported here before it
#: is set: prometheus-client reads it once, at import).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DEFAULT_BIND = "127.0.0.1:8000"
#: Longest request line plus headers (bytes); a longer head is answered 431.
MAX_HEAD_BYTES = 64 * 1024
#: Bodies above this many bytes are spooled to a temporary file instead of memory.
SPOOL_BYTES = 1024 * 1024
#: gunicorn's listen queue behind the front (the front never has more than its slots outstanding).
UPSTREAM_BACKLOG = 64
CHUNK = 64 * 1024
HEX_DIGITS = b"0123456789abcdefABCDEF"
#: The share of QUEUE_TIME_BUDGET_MS a request may spend waiting in the front (the rest is for gunicorn's queue).
FRONT_SHARE = 0.75
#: Weight of the newest request in the running mean of the time requests spend behind the front.
EWMA_WEIGHT = 0.1
#: Request headers the front does not pass on: hop-by-hop ones, and those only the front may write.
DROPPED_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"expect",
        b"content-length",
        b"x-request-start",
        b"x-labservice-front",
        b"x-labservice-peer",
    }
)


@dataclass(frozen=True)
class FrontSettings:
    budget_ms: int
    workers: int
    upstream_connections: int
    max_waiting: int
    max_connections: int
    header_timeout: float
    body_timeout: float
    max_body_bytes: int

    @classmethod
    def from_settings(cls, settings: dict[str, Any], workers: int) -> FrontSettings:
        return cls(
            budget_ms=int(settings["QUEUE_TIME_BUDGET_MS"]),
            workers=max(1, workers),
            upstream_connections=int(settings["FRONT_UPSTREAM_CONNECTIONS"]) or 2 * max(1, workers),
            max_waiting=int(settings["FRONT_MAX_WAITING"]),
            max_connections=int(settings["FRONT_MAX_CONNECTIONS"]),
            header_timeout=float(settings["FRONT_HEADER_TIMEOUT"]),
            body_timeout=float(settings["FRONT_BODY_TIMEOUT"]),
            max_body_bytes=max(int(settings["MAX_UPLOAD_BYTES"]), int(settings["MAX_CONTENT_LENGTH"])),
        )


#: The reason a refusal is counted under (labservice_front_refused_requests_total), by status, unless it names one.
REASONS = {
    400: "bad_request",
    408: "too_slow",
    413: "too_large",
    431: "headers_too_large",
    501: "not_implemented",
    502: "no_answer",
    503: "overloaded",
}


class ClientError(Exception):
    """A request the front answers itself (status, title, detail), without passing it on; counted by status and
    `reason` in labservice_front_refused_requests_total."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: Sequence[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, tuple(headers)
        self.reason = reason or REASONS.get(status, "other")


def problem_bytes(status: int, title: str, detail: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, "errors": {}}
    ).encode()
    lines = [
        f"HTTP/1.1 {status} {title}",
        "Content-Type: application/problem+json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def overloaded(detail: str, reason: str) -> ClientError:
    """503 with Retry-After; `reason`: connections, queue_full, queue_time or unavailable (gunicorn not there)."""
    return ClientError(503, "Service Unavailable", detail, [("Retry-After", str(SHED_RETRY_AFTER))], reason)


class Body:
    """A request body read by the front: in memory, or in a temporary file once above SPOOL_BYTES."""

    def __init__(self) -> None:
        self.size = 0
        self._parts: list[bytes] = []
        self._file: IO[bytes] | None = None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None and self.size > SPOOL_BYTES:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
            for part in self._parts:
                self._file.write(part)
            self._parts = []
        if self._file is not None:
            self._file.write(data)
        else:
            self._parts.append(data)

    def chunks(self):
        if self._file is None:
            yield from self._parts
            return
        self._file.seek(0)
        while data := self._file.read(CHUNK):
            yield data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Front:
    """The asyncio server: read whole, stamp, wait for a slot (or be refused), forward, relay."""

    def __init__(
        self,
        settings: FrontSettings,
        upstream: str,
        secret: str,
        count: Callable[[int, str], None] = lambda status, reason: None,
    ) -> None:
        self.settings = settings
        #: Called with (status, reason) for each request the front answers itself (labservice.serving.metrics).
        self.count = count
        self.upstream = upstream
        self.secret = secret
        self.slots = asyncio.Semaphore(settings.upstream_connections)
        self.waiting = 0
        self.open = 0
        #: Running mean (exponentially weighted) of the seconds a request spends behind the front.
        self.upstream_seconds = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.settings.max_connections:
            await self._refuse(writer, overloaded("The service has too many open connections.", "connections"))
            writer.close()
            return
        self.open += 1
        body: Body | None = None
        try:
            peer = writer.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) and peer else ""
            try:
                head, body = await self._read_request(reader, writer)
            except ClientError as error:
                await self._refuse(writer, error)
                return
            arrived = time.time()
            await self._queue_and_forward(head, body, arrived, address, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self.open -= 1
            if body is not None:
                body.close()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _refuse(self, writer: asyncio.StreamWriter, error: ClientError) -> None:
        """Answer a request the front does not pass on, and count it (a count that fails never stops the answer)."""
        with contextlib.suppress(Exception):
            self.count(error.status, error.reason)
        await _answer(writer, error)

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[list[bytes], Body]:
        try:
            async with asyncio.timeout(self.settings.header_timeout):  # no extra task, unlike wait_for
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise ClientError(
                408,
                "Request Timeout",
                f"The request line and headers did not arrive within {self.settings.header_timeout:g} s.",
            ) from None
        except asyncio.LimitOverrunError:
            raise ClientError(
                431,
                "Request Header Fields Too Large",
                f"The request line and headers are longer than {MAX_HEAD_BYTES} bytes.",
            ) from None
        lines = raw[:-4].split(b"\r\n")
        while lines and not lines[0]:  # stray empty lines before the request line are allowed (RFC 9112 2.2)
            lines.pop(0)
        if not lines or len(lines[0].split(b" ")) != 3:
            raise ClientError(400, "Bad Request", "The request line is not METHOD TARGET HTTP/VERSION.")
        request_line, headers = lines[0], lines[1:]
        length: int | None = None
        chunked = False
        expect_continue = False
        for line in headers:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ClientError(400, "Bad Request", "A header line is not NAME: VALUE.")
            lowered, value = name.lower(), value.strip()
            if lowered == b"content-length":
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise ClientError(400, "Bad Request", "Content-Length is not one whole number.")
                length = int(value)
            elif lowered == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise ClientError(501, "Not Implemented", "Only the chunked transfer coding is accepted.")
                chunked = True
            elif lowered == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if chunked and length is not None:
            raise ClientError(400, "Bad Request", "Content-Length and Transfer-Encoding together.")
        if length is not None and length > self.settings.max_body_bytes:
            raise ClientError(
                413, "Content Too Large", f"The body is larger than {self.settings.max_body_bytes} bytes."
            )
        if expect_continue and (chunked or length):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = Body()
        try:
            if chunked:
                await self._read_chunked(reader, body)
            elif length:
                while body.size < length:
                    body.add(await self._read_some(reader, min(CHUNK, length - body.size)))
        except BaseException:
            body.close()
            raise
        kept = [line for line in headers if line.partition(b":")[0].strip().lower() not in DROPPED_HEADERS]
        return [request_line, *kept], body

    async def _read_some(self, reader: asyncio.StreamReader, most: int) -> bytes:
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                data = await reader.read(most)
        except TimeoutError:
            raise ClientError(
                408, "Request Timeout", f"The body stalled for more than {self.settings.body_timeout:g} s."
            ) from None
        if not data:
            raise asyncio.IncompleteReadError(b"", most)
        return data

    async def _read_line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                return await reader.readuntil(b"\r\n")
        except TimeoutError:
            raise ClientError(
                408, "Request Timeout", f"The body stalled for more than {self.settings.body_timeout:g} s."
            ) from None
        except asyncio.LimitOverrunError:
            raise ClientError(400, "Bad Request", "A chunk size line is too long.") from None

    async def _read_chunked(self, reader: asyncio.StreamReader, body: Body) -> None:
        while True:
            size_text = (await self._read_line(reader)).split(b";", 1)[0].strip()
            if not size_text or size_text.strip(HEX_DIGITS):  # no sign, no 0x, no underscores
                raise ClientError(400, "Bad Request", "A chunk size is not hexadecimal.")
            size = int(size_text, 16)
            if size == 0:
                while (await self._read_line(reader)) != b"\r\n":  # trailers, dropped
                    pass
                return
            if body.size + size > self.settings.max_body_bytes:
                raise ClientError(
                    413, "Content Too Large", f"The body is larger than {self.settings.max_body_bytes} bytes."
                )
            left = size
            while left:
                data = await self._read_some(reader, min(CHUNK, left))
                body.add(data)
                left -= len(data)
            if await self._read_line(reader) != b"\r\n":
                raise ClientError(400, "Bad Request", "A chunk does not end with CRLF.")

    async def _queue_and_forward(
        self, head: list[bytes], body: Body, arrived: float, address: str, writer: asyncio.StreamWriter
    ) -> None:
        # The front aims at FRONT_SHARE of the budget: what it lets through still waits in gunicorn's short queue,
        # where the app refuses it past the whole budget (a wasted hand-over).
        budget = FRONT_SHARE * self.settings.budget_ms / 1e3
        if _path(head[0]) in NEVER_SHED:  # the liveness probe does not queue in the front
            await self._forward(head, body, arrived, address, writer, lambda: None)
            return
        if self.waiting >= self.settings.max_waiting:
            await self._refuse(
                writer, overloaded(f"The service is overloaded: {self.waiting} requests are waiting.", "queue_full")
            )
            return
        if self.slots.locked():  # every slot busy: wait for one, if it can come in time
            # A slot frees every D / S seconds or so (D: the running mean time a request spends behind the front,
            # S: the slots), so this request would have one after about (waiting + 1) * D / S, and then wait in
            # gunicorn's short queue behind the S - W requests the W workers are not serving. Past the budget (or
            # with no time left for gunicorn's queue): refused now, not after waiting for nothing.
            every = self.upstream_seconds / self.settings.upstream_connections
            queued = max(1, self.settings.upstream_connections - self.settings.workers) * every
            expected = (self.waiting + 1) * every + queued
            left = budget - queued - (time.time() - arrived)
            if expected > budget or left <= 0:
                await self._refuse(
                    writer,
                    overloaded(
                        f"The service is overloaded: this request would wait about {expected * 1e3:.0f} ms for a "
                        f"worker, more than the {budget * 1e3:.0f} ms it may wait here. Retry after "
                        f"{SHED_RETRY_AFTER} s.",
                        "queue_time",
                    ),
                )
                return
            self.waiting += 1
            try:
                async with asyncio.timeout(left):
                    await self.slots.acquire()
            except TimeoutError:
                await self._refuse(
                    writer,
                    overloaded(
                        f"The service is overloaded: this request waited {budget * 1e3:.0f} ms for a worker, as "
                        f"long as it may wait here. Retry after {SHED_RETRY_AFTER} s.",
                        "queue_time",
                    ),
                )
                return
            finally:
                self.waiting -= 1
        else:
            await self.slots.acquire()  # free: at once
        released = False

        def release() -> None:  # once the worker has finished, not once a slow client has read it all
            nonlocal released
            if not released:
                released = True
                self.slots.release()

        try:
            await self._forward(head, body, arrived, address, writer, release)
        finally:
            release()

    async def _forward(
        self,
        head: list[bytes],
        body: Body,
        arrived: float,
        address: str,
        writer: asyncio.StreamWriter,
        worker_done: Callable[[], None],
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.upstream, limit=CHUNK)
        except OSError:
            await self._refuse(writer, overloaded("The service is starting or stopping.", "unavailable"))
            return
        started = time.monotonic()
        try:
            stamp = int(arrived * 1e6)
            extra = [
                f"Content-Length: {body.size}",
                "Connection: close",
                f"X-Request-Start: t={stamp}",
                f"X-Labservice-Front: {self.secret}",
                f"X-Labservice-Peer: {address}",
            ]
            upstream_writer.write(b"\r\n".join(head) + b"\r\n" + "\r\n".join(extra).encode("latin-1") + b"\r\n\r\n")
            # The body is sent while the answer is read: the app may answer (401, 413) without reading the whole
            # body and close, and that answer must still reach the client.
            sending = asyncio.create_task(_send_body(upstream_writer, body))
            # The answer is read from the worker as fast as it comes, into a spool (memory, then a temporary file
            # past SPOOL_BYTES), and sent to the client from there: a client that reads slowly holds the front's
            # spool, never the worker (whose answer would otherwise wait in a full socket buffer).
            spool = Spool(worker_done)
            receiving = asyncio.create_task(_receive(upstream_reader, spool))
            try:
                answered = await spool.send_to(writer) > 0
            finally:
                for task in (sending, receiving):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                spool.close()
            if not answered:
                await self._refuse(writer, ClientError(502, "Bad Gateway", "The worker closed without answering."))
            # Clamped: one long request (a worker booting, a big upload) must not make the front refuse everything.
            # Until the worker finished: the client's own reading speed is not the worker's.
            taken = min((spool.finished_at or time.monotonic()) - started, 4 * self.settings.budget_ms / 1e3)
            self.upstream_seconds += EWMA_WEIGHT * (taken - self.upstream_seconds) if self.upstream_seconds else taken
        finally:
            upstream_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await upstream_writer.wait_closed()


class Spool:
    """An answer on its way from the worker to the client: appended to by one task, sent on by another."""

    def __init__(self, on_finish: Callable[[], None]) -> None:
        self.on_finish = on_finish
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0
        self.finished = False
        self.finished_at = 0.0
        self._more = asyncio.Event()

    def add(self, data: bytes) -> None:
        if self._file is None and self.size + len(data) > SPOOL_BYTES:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
            self._file.write(self._memory)
            self._memory = bytearray()
        if self._file is not None:
            self._file.seek(0, os.SEEK_END)
            self._file.write(data)
        else:
            self._memory += data
        self.size += len(data)
        self._more.set()

    def finish(self) -> None:
        self.finished = True
        self.finished_at = time.monotonic()
        self._more.set()
        self.on_finish()

    def _read(self, offset: int) -> bytes:
        if self._file is None:
            return bytes(self._memory[offset : offset + CHUNK])
        self._file.seek(offset)
        return self._file.read(CHUNK)

    async def send_to(self, writer: asyncio.StreamWriter) -> int:
        """Send everything to the client as it arrives, until the worker has finished; the bytes sent."""
        sent = 0
        while True:
            if sent < self.size:
                data = self._read(sent)
                writer.write(data)
                sent += len(data)
                await writer.drain()
            elif self.finished:
                return sent
            else:
                self._more.clear()
                await self._more.wait()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def _receive(upstream: asyncio.StreamReader, spool: Spool) -> None:
    try:
        while data := await upstream.read(CHUNK):
            spool.add(data)
    except (ConnectionError, OSError):
        pass  # the worker went away: what it sent is sent on, then the connection ends
    finally:
        spool.finish()


async def _send_body(upstream: asyncio.StreamWriter, body: Body) -> None:
    try:
        for data in body.chunks():
            upstream.write(data)
            await upstream.drain()
    except (ConnectionError, OSError):
        pass  # the worker stopped reading: it has answered, or will close without answering (502)


def _path(request_line: bytes) -> str:
    """The path of a request line, without its query."""
    target = request_line.split(b" ")[1] if request_line.count(b" ") >= 2 else b""
    return target.split(b"?", 1)[0].decode("latin-1")


async def _answer(writer: asyncio.StreamWriter, error: ClientError) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(problem_bytes(error.status, error.title, error.detail, error.headers))
        await writer.drain()


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--bind {bind!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def workers_in(argv: Sequence[str]) -> int:
    """The worker count in a gunicorn command line (-w N, --workers N, --workers=N); 1 if absent."""
    for i, arg in enumerate(argv):
        if arg in ("-w", "--workers") and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--workers=") and arg.split("=", 1)[1].isdigit():
            return int(arg.split("=", 1)[1])
        if arg.startswith("-w") and arg[2:].isdigit():
            return int(arg[2:])
    return int(os.environ.get("WEB_CONCURRENCY", "1") or 1)


async def serve(bind: str, gunicorn_argv: Sequence[str], ready: Any = None) -> int:
    """Start gunicorn on a private socket, serve the front on `bind` until a signal or gunicorn's exit."""
    host, port = parse_bind(bind)
    settings = FrontSettings.from_settings(load_settings(), workers_in(gunicorn_argv))
    private = Path(tempfile.mkdtemp(prefix="labservice-front-"))  # mode 0700: only this user can connect
    upstream = str(private / "gunicorn.sock")
    secret = secrets.token_urlsafe(32)
    metrics_directory = share_metrics_directory()
    from labservice.serving.metrics import count_front_refusal  # after the directory is set: read at import

    child = subprocess.Popen(
        [*gunicorn_argv, "-b", f"unix:{upstream}", "--backlog", str(UPSTREAM_BACKLOG)],
        env={**os.environ, FRONT_SECRET_VARIABLE: secret},
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        front = Front(settings, upstream, secret, count_front_refusal)
        server = await asyncio.start_server(front.handle, host, port, limit=MAX_HEAD_BYTES, backlog=2048)

        def forward(signum: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
            if signum != signal.SIGHUP:
                stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, forward, signum)
        exited = loop.run_in_executor(None, child.wait)
        exited.add_done_callback(lambda _: stop.set())
        print(
            json.dumps(
                {
                    "message": f"labservice front on http://{bind}: gunicorn behind it, "
                    f"{settings.upstream_connections} requests at a time, queue-time budget "
                    f"{settings.budget_ms} ms"
                }
            ),
            file=sys.stderr,
            flush=True,
        )
        if ready is not None:
            ready(server)
        await stop.wait()
        server.close()
        code = await exited
        return code if code >= 0 else 128 - code
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(private, ignore_errors=True)
        if metrics_directory is not None:
            shutil.rmtree(metrics_directory, ignore_errors=True)


def share_metrics_directory() -> str | None:
    """Make sure PROMETHEUS_MULTIPROC_DIR is set before prometheus-client is imported here and in gunicorn: the
    front counts its refusals in its own file there, gunicorn's workers theirs, and a scrape of /metrics (by
    any worker) sums them all. A fresh directory unless one is configured; returned when made here (removed at
    exit)."""
    if os.environ.get(MULTIPROC_ENV):
        return None
    directory = tempfile.mkdtemp(prefix="labservice-metrics-")
    os.environ[MULTIPROC_ENV] = directory  # inherited by gunicorn, whose configuration then keeps it
    return directory


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labservice.serving.front",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bind", "-b", default=DEFAULT_BIND, help=f"public address (default {DEFAULT_BIND})")
    parser.add_argument(
        "gunicorn",
        nargs=argparse.REMAINDER,
        help="-- gunicorn [options] APP (no -b: the front gives it its private socket)",
    )
    args = parser.parse_args(argv)
    command = list(args.gunicorn[1:] if args.gunicorn[:1] == ["--"] else args.gunicorn)
    if not command:
        parser.error("give the gunicorn command after --")
    return run_loop(serve(args.bind, command))


def run_loop(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run the front on uvloop where it is installed (a dependency off Windows): the same asyncio API, with about
    a third less CPU per request in the front, CPU the workers behind it then have; else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


if __name__ == "__main__":
    sys.exit(main())
