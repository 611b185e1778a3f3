"""`labservice mllp`: an MLLP listener for interface engines, answering every HL7 v2 message with an ACK.

MLLP frames each message as <VT> message <FS><CR> (0x0B ... 0x1C 0x0D). One thread per connection
(several connections at once); each connection may carry any number of messages, answered in
order. Every frame gets an ACK: AA, AE (content the sender can correct, ERR naming segment and
field) or AR (not a message type taken here, not HL7, larger than MAX_CONTENT_LENGTH, or an
error on our side).
Bytes outside a frame are discarded, and a frame restarted before it ended keeps its last start,
so a sender's garbage never stops the listener. Messages go through the same `receive_message`
as POST /api/v1/hl7v2/interpret, with the app's configuration: the same database (results with
a patient id are stored), rule tables, local codes and time zone.

MLLP has no authentication of its own, so the listener binds to 127.0.0.1 by default and accepts connections
only from the addresses in MLLP_ALLOWED_PEERS (addresses or networks, default 127.0.0.1 and ::1); any other peer
is closed at once, unread, and logged with its address.

python-hl7's own `hl7.mllp` (asyncio streams) is not used: its `readblock` raises InvalidBlockError on
any byte before <VT> and knows no frame ended by FS alone, and interpreting a message is blocking work
(the engine, the database) that would need an executor anyway; a thread per connection is simpler.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import socketserver
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

START, END, CR = b"\x0b", b"\x1c", b"\r"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 2575
DEFAULT_IDLE_TIMEOUT = 600.0
RECEIVE_BYTES = 65536

log = logging.getLogger("labservice.mllp")
#: Answers one frame's bytes (and the sender's address) with the ACK text and a line for the log.
Responder = Callable[[bytes, str], tuple[str, str]]


class FrameBuffer:
    """Bytes in, complete frames out; garbage between frames dropped. A frame growing over `limit`
    comes out as None (to be answered AR) and the rest of it is skipped up to its FS."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buffer = bytearray()
        self.discarded = 0
        self.skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        self.buffer += data
        frames: list[bytes | None] = []
        while True:
            if self.skipping and not self._skip():
                return frames
            start = self.buffer.find(START)
            if start == -1:
                self.discarded += len(self.buffer)
                self.buffer.clear()
                return frames
            if start:
                self.discarded += start
                del self.buffer[:start]
            end = self.buffer.find(END, 1)
            if end == -1:
                if len(self.buffer) > self.limit + 1:
                    frames.append(None)
                    self.skipping = True
                    continue
                return frames
            if end + 1 == len(self.buffer):
                return frames  # wait for the CR that should follow FS
            frame = bytes(self.buffer[1:end])
            del self.buffer[: end + (2 if self.buffer[end + 1 : end + 2] == CR else 1)]
            restart = frame.rfind(START)
            if restart != -1:  # a frame begun again before it ended: keep the last start
                self.discarded += restart + 1
                frame = frame[restart + 1 :]
            frames.append(frame if len(frame) <= self.limit else None)

    def _skip(self) -> bool:
        """Drop the rest of an oversized frame; True once its FS has been passed."""
        end = self.buffer.find(END)
        if end == -1:
            self.discarded += len(self.buffer)
            self.buffer.clear()
            return False
        self.discarded += end + 1
        del self.buffer[: end + 1]
        self.skipping = False
        return True


class MllpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        respond: Responder,
        *,
        max_bytes: int,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        allowed_peers: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    ):
        self.respond = respond
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.allowed_peers = tuple(allowed_peers)
        super().__init__(address, MllpHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Only peers in MLLP_ALLOWED_PEERS are served; any other connection is closed unread."""
        if peer_allowed(str(client_address[0]), self.allowed_peers):
            return True
        log.warning("%s: connection refused: not in MLLP_ALLOWED_PEERS", client_address[0])
        return False


def allowed_peers(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """MLLP_ALLOWED_PEERS ("127.0.0.1, ::1, 10.1.0.0/16") as networks; a bad entry raises ValueError naming it."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"MLLP_ALLOWED_PEERS: {item!r} is not an address or network") from None
    return tuple(networks)


def peer_allowed(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        peer = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped  # ::ffff:10.1.2.3 on a dual-stack socket is 10.1.2.3
    return any(peer.version == network.version and peer in network for network in networks)


class MllpHandler(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        peer = "{}:{}".format(*self.client_address[:2])
        connection: socket.socket = self.request
        connection.settimeout(self.server.idle_timeout or None)
        frames = FrameBuffer(self.server.max_bytes)
        while True:
            try:
                data = connection.recv(RECEIVE_BYTES)
            except (TimeoutError, OSError):
                break
            if not data:
                break
            for frame in frames.feed(data):
                if frame is None:
                    log.warning("%s: a frame over %d bytes answered AR", peer, self.server.max_bytes)
                    sent = self._send(connection, too_large_ack(self.server.max_bytes))
                else:
                    sent = self._answer(connection, peer, self.server.respond, frame)
                if not sent:
                    return
        if frames.discarded:
            log.info("%s: %d bytes outside MLLP frames discarded", peer, frames.discarded)

    def _answer(self, connection: socket.socket, peer: str, respond: Responder, frame: bytes) -> bool:
        try:
            ack, summary = respond(frame, peer)
        except Exception:  # the listener must outlive any one message
            log.exception("%s: error while interpreting a message", peer)
            ack, summary = internal_error_ack(frame), "AR (internal error)"
        log.info("%s: %s", peer, summary)
        return self._send(connection, ack)

    @staticmethod
    def _send(connection: socket.socket, ack: str) -> bool:
        try:
            connection.sendall(START + ack.encode("utf-8") + END + CR)
        except OSError:
            return False
        return True


def too_large_ack(limit: int) -> str:
    from labservice.adapters.hl7v2.ack import build_ack
    from labservice.adapters.hl7v2.problems import Hl7Problem

    detail = f"The message is larger than {limit} bytes (MAX_CONTENT_LENGTH)."
    return build_ack(None, [], Hl7Problem(413, detail, {"MSH": [detail]}, ack_code="AR"))


def internal_error_ack(frame: bytes) -> str:
    """AR with HL7 error 207, echoing the message's control id when its header can be read."""
    import hl7

    from labservice.adapters.hl7v2.ack import build_ack
    from labservice.adapters.hl7v2.problems import APPLICATION_ERROR, Hl7Problem
    from labservice.adapters.hl7v2.text import decode, normalise

    try:
        message = hl7.parse(normalise(decode(frame)).split("\r", 1)[0])
    except Exception:
        message = None
    detail = "The message could not be processed because of an error in labservice; it has been logged."
    return build_ack(message, [], Hl7Problem(500, detail, {}, ack_code="AR", default_code=APPLICATION_ERROR))


def app_responder(app: Any) -> Responder:
    """Answer frames the way POST /api/v1/hl7v2/interpret does, storing into the app's database."""
    from labservice.extensions import current_database, current_hl7v2_settings
    from labservice.services.hl7v2_receive import receive_message
    from labservice.services.store_results import keep_in

    database = current_database(app)
    settings = current_hl7v2_settings(app)
    keep = keep_in(database, settings.ruleset, app.config["DELTA_WINDOW_DAYS"], source="hl7v2")
    max_cbcs = app.config["MAX_BATCH_ITEMS"]
    clock_skew = timedelta(seconds=app.config["CLOCK_SKEW_SECONDS"])

    def respond(frame: bytes, peer: str = "") -> tuple[str, str]:
        received = receive_message(frame, settings, keep=keep, max_cbcs=max_cbcs, clock_skew=clock_skew)
        control = received.parsed.header.control_id if received.parsed else ""
        if received.problem is not None:  # the detail can quote the message's values: the log gets counts only
            blamed = len(received.problem.errors)
            return received.ack, f"{control or '-'} {received.ack_code}: {blamed} field(s) to blame"
        interpretations = (received.answer or {}).get("interpretations", [])
        audit_message(database, received, interpretations, peer)  # AuditUnavailable: answered AR 207
        stored = sum(1 for answer in interpretations if "stored" in answer)
        return received.ack, f"{control or '-'} AA: {len(interpretations)} CBC(s), {stored} stored"

    return respond


def audit_message(database: Any, received: Any, interpretations: list[dict[str, Any]], peer: str) -> None:
    """The audit rows of one message: one per patient, the sending application as the actor."""
    import uuid

    from labservice.middleware.audit_trail import records_for, write_records
    from labservice.security.principal import Principal

    header = received.parsed.header if received.parsed else None
    sender = (
        "^".join(
            part
            for part in (getattr(header, "sending_application", ""), getattr(header, "sending_facility", ""))
            if part
        )
        or "unknown sender"
    )
    principal = Principal("mllp", sender)
    address = peer.rsplit(":", 1)[0] if peer else None
    request_id = uuid.uuid4().hex
    records = []
    for action in ("create", "interpret"):
        patients = [
            answer.get("patient_id") for answer in interpretations if ("stored" in answer) == (action == "create")
        ]
        records += records_for(
            patients,
            action,
            resource="MLLP HL7 v2 message",
            status=200,
            principal=principal,
            remote_addr=address,
            request_id=request_id,
        )
    write_records(database, records)


def serve(host: str, port: int, idle_timeout: float | None) -> int:
    """Create the app (configuration, rule tables, database), listen, and answer until stopped."""
    from labservice.app import create_app
    from labservice.serving.log_lines import configure_logging

    configure_logging("INFO")  # JSON lines on stderr, no patient data
    try:
        app = create_app()
    except Exception as error:  # a bad rule table or local-code file: say which, and stop
        print(f"labservice mllp: {error}", file=sys.stderr)
        return 1
    try:
        peers = allowed_peers(app.config["MLLP_ALLOWED_PEERS"])
    except ValueError as error:
        print(f"labservice mllp: {error}", file=sys.stderr)
        return 1
    try:
        server = MllpServer(
            (host, port),
            app_responder(app),
            max_bytes=app.config["MAX_CONTENT_LENGTH"],
            idle_timeout=idle_timeout,
            allowed_peers=peers,
        )
    except OSError as error:
        print(f"labservice mllp: cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"labservice mllp: listening on {bound_host!s}:{bound_port}", flush=True)
    log.info("accepting connections from %s", ", ".join(str(network) for network in peers) or "nobody")
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


def _stop(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "mllp",
        help="listen for HL7 v2 messages over MLLP and answer each with an ACK",
        description="MLLP listener for interface engines: ORU^R01 / ORF^R04 in, an ACK (AA/AE/AR) out per "
        "message; results are stored like POST /api/v1/hl7v2/interpret (DATABASE_URL and the "
        "LABSERVICE_* settings apply). MLLP has no authentication: keep it on 127.0.0.1 or a closed "
        "network, and list the interface engines' addresses in LABSERVICE_MLLP_ALLOWED_PEERS.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port",
        "-p",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one and prints it)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"close a connection idle this many seconds (default {DEFAULT_IDLE_TIMEOUT:g}; 0: never)",
    )


def run(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, args.idle_timeout or None)
