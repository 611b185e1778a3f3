"""MLLP has no HL7 authentication: `labservice mllp` serves only the peers in MLLP_ALLOWED_PEERS (the real CLI
listener over real sockets)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labservice.mllp import allowed_peers, peer_allowed
from tests.adapters.hl7v2.samples import NHAPI_ORU, raw

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
TIMEOUT = 60


@contextlib.contextmanager
def listener(directory: Path, peers: str | None) -> Iterator[tuple[int, subprocess.Popen]]:
    url = f"sqlite:///{directory / 'labservice.sqlite'}"
    env = {**os.environ, "DATABASE_URL": url, "LABSERVICE_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    if peers is not None:
        env["LABSERVICE_MLLP_ALLOWED_PEERS"] = peers
    process = subprocess.Popen(
        [sys.executable, "-m", "labservice.cli", "mllp", "--port", "0"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=TIMEOUT)
    except queue.Empty:
        process.kill()
        pytest.fail(f"the listener did not start: {process.stderr.read()}")
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)  # 127.0.0.1 by default
    assert match, first
    try:
        yield int(match.group(1)), process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=TIMEOUT)


def exchange(port: int) -> bytes:
    """Send nHapi's ORU^R01 in one frame; everything the listener sends back before it closes or 10 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        try:
            connection.sendall(VT + raw(NHAPI_ORU) + FS + CR)
        except OSError:  # closed before we finished sending
            return b""
        data = b""
        while FS + CR not in data:
            try:
                chunk = connection.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_the_default_serves_loopback(tmp_path):
    with listener(tmp_path, None) as (port, _):
        answer = exchange(port)
    assert answer.startswith(VT + b"MSH|") and b"MSA|AA|" in answer


def test_a_peer_not_allowed_is_closed_unanswered_and_logged(tmp_path):
    with listener(tmp_path, "10.20.0.0/16") as (port, process):
        assert exchange(port) == b""
        assert exchange(port) == b""  # every time
    log = process.stderr.read()
    assert "127.0.0.1: connection refused: not in MLLP_ALLOWED_PEERS" in log
    assert "PLTC" not in log  # nothing of the message was read or logged


def test_a_bad_allowlist_stops_the_listener(tmp_path):
    url = f"sqlite:///{tmp_path / 'labservice.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-m", "labservice.cli", "mllp", "--port", "0"],
        cwd=tmp_path,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "LABSERVICE_DATABASE_URL": url,
            "LABSERVICE_MLLP_ALLOWED_PEERS": "127.0.0.1, not-an-address",
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 1
    assert "MLLP_ALLOWED_PEERS: 'not-an-address' is not an address or network" in done.stderr


@pytest.mark.parametrize(
    ("address", "peers", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1,::1", True),
        ("::1", "127.0.0.1,::1", True),
        ("10.1.2.3", "127.0.0.1,::1", False),
        ("10.1.2.3", "10.1.0.0/16", True),
        ("10.2.0.1", "10.1.0.0/16", False),
        ("::ffff:10.1.2.3", "10.1.0.0/16", True),  # IPv4-mapped on a dual-stack socket
        ("fe80::1%eth0", "fe80::/10", True),
        ("127.0.0.1", "", False),
        ("garbage", "0.0.0.0/0", False),
    ],
)
def test_peer_allowlist(address, peers, allowed):
    assert peer_allowed(address, allowed_peers(peers)) is allowed


def test_networks_are_parsed_leniently():
    assert allowed_peers(" 10.1.2.3/16 , ::1 ") == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("::1"))
