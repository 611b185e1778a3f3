"""`labservice mllp`: MLLP framing, and the real listener (the CLI as a subprocess) over real sockets.

Expected ACKs follow the fixture files: nHapi's ORU^R01 (control id 52780002432, PLTC 45) is accepted
(AA); FHIR-Converter's LAB-ORU-2 has the haemoglobin unit 'g/l-1' (AE); text that is not HL7 is
rejected (AR). MLLP frames are <VT> message <FS><CR>.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hl7
import pytest
from sqlalchemy import select, text

from labservice.mllp import FrameBuffer
from labservice.store.database import Database
from labservice.store.models import CbcResult
from tests.adapters.hl7v2.samples import LAB_ORU_2, NHAPI_ORF, NHAPI_ORU, NIST_LRI, raw, replace_field
from tests.adapters.hl7v2.samples import text as message_text

ROOT = Path(__file__).resolve().parents[1]
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
START_TIMEOUT = 60
IO_TIMEOUT = 30


def frame(message: bytes) -> bytes:
    return VT + message + FS + CR


# --- framing -------------------------------------------------------------------------------------


def test_one_frame():
    assert FrameBuffer(1000).feed(frame(b"MSH|x")) == [b"MSH|x"]


def test_a_frame_fed_byte_by_byte():
    buffer = FrameBuffer(1000)
    out = [f for byte in frame(b"MSH|abc") for f in buffer.feed(bytes([byte]))]
    assert out == [b"MSH|abc"]


def test_several_frames_in_one_read_and_garbage_between():
    buffer = FrameBuffer(1000)
    assert buffer.feed(b"noise" + frame(b"A") + b"\r\n" + frame(b"B")) == [b"A", b"B"]
    assert buffer.discarded == len(b"noise") + 2


def test_a_frame_ended_by_fs_without_cr():
    buffer = FrameBuffer(1000)
    assert buffer.feed(VT + b"A" + FS + VT + b"B" + FS + CR) == [b"A", b"B"]


def test_a_frame_restarted_before_it_ended_keeps_the_last_start():
    buffer = FrameBuffer(1000)
    assert buffer.feed(VT + b"broken" + VT + b"MSH|ok" + FS + CR) == [b"MSH|ok"]


def test_a_frame_over_the_limit_comes_out_as_none_and_the_next_frame_is_read():
    buffer = FrameBuffer(10)
    assert buffer.feed(VT + b"x" * 20) == [None]
    assert buffer.feed(b"y" * 5) == []
    assert buffer.feed(FS + CR + frame(b"MSH|ok")) == [b"MSH|ok"]


def test_a_complete_frame_over_the_limit_is_none():
    assert FrameBuffer(10).feed(frame(b"x" * 11) + frame(b"MSH|ok")) == [None, b"MSH|ok"]


# --- the listener --------------------------------------------------------------------------------


@contextlib.contextmanager
def running_listener(directory: Path) -> Iterator[tuple[int, str]]:
    """`labservice mllp --port 0` (the real CLI) on a fresh SQLite database: (port, database URL)."""
    url = f"sqlite:///{directory / 'labservice.sqlite'}"
    env = {**os.environ, "DATABASE_URL": url, "LABSERVICE_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "labservice.cli", "mllp", "--host", "127.0.0.1", "--port", "0"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        process.kill()
        pytest.fail(f"the listener did not start: {process.stderr.read()}")
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
    assert match, first
    try:
        yield int(match.group(1)), url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=IO_TIMEOUT) == 0


@pytest.fixture(scope="module")
def listener(tmp_path_factory) -> Iterator[tuple[int, str]]:
    with running_listener(tmp_path_factory.mktemp("mllp")) as running:
        yield running


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)


def read_acks(connection: socket.socket, count: int) -> list[hl7.Message]:
    data = b""
    while data.count(FS + CR) < count:
        chunk = connection.recv(65536)
        assert chunk, "the listener closed the connection"
        data += chunk
    frames = [part for part in data.split(FS + CR) if part]
    assert all(part.startswith(VT) for part in frames)
    return [hl7.parse(part[1:].decode("utf-8")) for part in frames]


def msa(ack: hl7.Message) -> tuple[str, str]:
    return str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))


def test_several_messages_on_one_connection_each_get_their_ack_in_order(listener):
    port, _ = listener
    with connect(port) as connection:
        connection.sendall(frame(raw(NHAPI_ORU)) + frame(raw(LAB_ORU_2)) + frame(b"this is not HL7"))
        acks = read_acks(connection, 3)
    assert msa(acks[0]) == ("AA", "52780002432")
    assert msa(acks[1]) == ("AE", "ControlID")  # LAB-ORU-2's MSH-10
    assert "OBR[2].OBX[1]-6" in str(acks[1].segment("ERR")(8))
    assert msa(acks[2]) == ("AR", "")


def test_the_implausible_nist_haemoglobin_is_ae_naming_obx_2(listener):
    port, _ = listener
    with connect(port) as connection:
        connection.sendall(frame(raw(NIST_LRI)))
        [ack] = read_acks(connection, 1)
    assert msa(ack) == ("AE", "NIST-LRI-NG-002.00")
    assert str(ack.segment("ERR")(2)) == "OBX^2^5"


def test_a_collection_time_ahead_of_the_clock_is_ae_naming_obr_7_and_nothing_is_stored(listener):
    """Issue 10, item 1: nHapi's ORU^R01 with OBR-7 moved to 2099 (the default skew allows 5 minutes)."""
    port, url = listener
    future = replace_field(message_text(NHAPI_ORU), ("OBR", 1), 7, "20990101000000")
    with connect(port) as connection:
        connection.sendall(frame(future.encode()))
        [ack] = read_acks(connection, 1)
    assert msa(ack) == ("AE", "52780002432")
    assert str(ack.segment("ERR")(2)) == "OBR^1^7"
    assert "future" in str(ack.segment("ERR")(8))
    database = Database.connect(url)
    try:
        with database.session() as session:
            times = list(session.scalars(select(CbcResult.collected_at)))
    finally:
        database.engine.dispose()
    assert all(moment is None or moment.year < 2099 for moment in times)


def test_haemoglobin_9_309_mmol_is_stored_as_15_and_platelets_in_g_per_l_are_ae_naming_the_unit(listener):
    """clinical-rules §1 v2 over MLLP: "9.309 mmol/L haemoglobin is 15.0 g/dL ... on every path"; "A count sent in
    `g/L` or `g/l` is an unknown unit (422)". nHapi's ORU^R01 with its HGB (the 5th OBX) sent as 9.309 mmol/L
    (its g/dL range dropped), then with its PLTC (the 17th OBX) in g/L."""
    port, url = listener
    hgb = replace_field(replace_field(message_text(NHAPI_ORU), ("OBX", 5), 5, "9.309"), ("OBX", 5), 6, "mmol/L")
    hgb = replace_field(replace_field(hgb, ("OBX", 5), 7, ""), ("MSH", 1), 9, "V2NUM-HGB")
    grams = replace_field(replace_field(message_text(NHAPI_ORU), ("OBX", 17), 6, "g/L"), ("MSH", 1), 9, "V2NUM-GL")
    with connect(port) as connection:
        connection.sendall(frame(hgb.encode()) + frame(grams.encode()))
        first, second = read_acks(connection, 2)
    assert msa(first) == ("AA", "V2NUM-HGB")
    assert msa(second) == ("AE", "V2NUM-GL")
    assert str(second.segment("ERR")(2)) == "OBX^17^6"
    assert "g/L" in str(second.segment("ERR")(8))
    database = Database.connect(url)
    try:
        with database.session() as session:
            values = set(session.scalars(select(CbcResult.hemoglobin)))
    finally:
        database.engine.dispose()
    assert 15.0 in values


def test_garbage_outside_frames_and_a_dropped_connection_do_not_stop_the_listener(listener):
    port, _ = listener
    with connect(port) as connection:
        connection.sendall(b"\x00\xff garbage \r\n" + VT + b"MSH|^~\\&|half a message")  # then hang up
    with connect(port) as connection:
        connection.sendall(b"more garbage" + frame(raw(NHAPI_ORU)))
        [ack] = read_acks(connection, 1)
    assert msa(ack) == ("AA", "52780002432")


def test_concurrent_connections(listener):
    port, _ = listener

    def exchange(_: int) -> list[tuple[str, str]]:
        with connect(port) as connection:
            connection.sendall(frame(raw(NHAPI_ORF)) + frame(raw(NHAPI_ORU)))
            return [msa(ack) for ack in read_acks(connection, 2)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(exchange, range(6)))
    # nHapi's ORF^R04 has an empty MSH-10, so its MSA-2 is empty
    assert results == [[("AA", ""), ("AA", "52780002432")]] * 6


def test_messages_are_stored_in_the_configured_database(listener):
    port, url = listener
    with connect(port) as connection:
        connection.sendall(frame(raw(NHAPI_ORF)))
        [ack] = read_acks(connection, 1)
    assert msa(ack)[0] == "AA"
    database = Database.connect(url)
    try:
        with database.session() as session:
            results = list(session.scalars(select(CbcResult).where(CbcResult.source == "hl7v2")))
    finally:
        database.engine.dispose()
    by_platelets = {result.platelets for result in results}
    assert {2.0, 45.0} <= by_platelets  # nHapi ORF PLTC 2 and ORU PLTC 45 (sent by the tests above too)
    orf = [result for result in results if result.platelets == 2.0]
    assert len(orf) == 1  # three identical groups, sent many times: stored once
    assert orf[0].raw["patient"]["id"] == "2019877"


def test_an_oversized_frame_is_answered_ar_and_the_next_message_read(listener):
    port, _ = listener
    with connect(port) as connection:
        oversized = VT + b"MSH|^~\\&|" + b"x" * (2 * 1024 * 1024 + 10) + FS + CR  # over MAX_CONTENT_LENGTH
        connection.sendall(oversized + frame(raw(NHAPI_ORU)))
        acks = read_acks(connection, 2)
    assert msa(acks[0])[0] == "AR"
    assert "larger than" in str(acks[0].segment("MSA")(3))
    assert msa(acks[1]) == ("AA", "52780002432")


def test_a_failure_on_our_side_is_ar_207_and_the_listener_goes_on(tmp_path):
    with running_listener(tmp_path) as (port, url):
        database = Database.connect(url)
        try:
            with database.session() as session:  # break storing for real: the results table is gone
                session.execute(text("DROP TABLE interpretations"))
                session.execute(text("DROP TABLE cbc_results"))
        finally:
            database.engine.dispose()
        with connect(port) as connection:
            connection.sendall(frame(raw(NHAPI_ORU)) + frame(raw(LAB_ORU_2)))
            acks = read_acks(connection, 2)
    assert msa(acks[0]) == ("AR", "52780002432")
    assert str(acks[0].segment("ERR")(3)).startswith("207^")
    assert msa(acks[1]) == ("AE", "ControlID")  # refused before storing: answered as usual


def test_the_differential_and_the_film_over_mllp_give_the_http_answer(listener):
    """clinical-rules §10 v2 over MLLP (the HL7 v2 reader of the HTTP path): the issue's MIMIC example sent as
    OBX with LOINC codes (analytes.csv; 800-3 schistocytes) is stored with blasts_reported and the
    thrombotic-microangiopathy pattern, immediate, the aplastic assessment not applicable."""
    from labservice.store.models import Interpretation

    segments = [
        "MSH|^~\\&|LAB|HOSP|LABSERVICE|HOSP|20261120083000||ORU^R01|FILM1|P|2.5.1",
        "PID|1||MRN-FILM-1^^^HOSP^MR||DOE^JOHN||19661120|M",
        "OBR|1|||57021-8^CBC with differential^LN|||20261120083000",
        "OBX|1|NM|6690-2^WBC^LN||35.9|10*3/uL|||||F",
        "OBX|2|NM|777-3^Platelets^LN||14|10*3/uL|||||F",
        "OBX|3|NM|718-7^Hemoglobin^LN||8.9|g/dL|||||F",
        "OBX|4|NM|26446-5^Blasts^LN||17|%|||||F",
        "OBX|5|ST|800-3^Schistocytes^LN||OCCASIONAL||||||F",
    ]
    port, url = listener
    with connect(port) as connection:
        connection.sendall(frame("\r".join(segments).encode()))
        [ack] = read_acks(connection, 1)
    assert msa(ack)[0] == "AA"
    database = Database.connect(url)
    try:
        with database.session() as session:
            film_sent = CbcResult.raw["film"]["schistocytes"].as_string() == "present"
            stored = session.scalars(select(Interpretation).join(CbcResult).where(film_sent)).all()
            answers = [item.answer for item in stored]
    finally:
        database.engine.dispose()
    assert len(answers) == 1
    codes = {finding["code"] for finding in answers[0]["findings"]}
    assert {"blasts_reported", "thrombotic_microangiopathy_pattern"} <= codes
    assert answers[0]["urgency"] == "immediate"
    assert answers[0]["aplastic_anemia"]["assessment"] == "not_applicable"
