"""SSRF through CDS Hooks `fhirServer`: only a FHIR server on the calling client's allowlist is read.

Real HTTP servers on loopback play the FHIR server (tests/adapters/cdshooks/build.py) and the hostile ones
(a redirect, an endless answer, a server that drips bytes). Every refusal, whatever its cause, must be the
same 412 problem, so the service cannot be used to tell an open port from a closed one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from labservice.adapters.cdshooks.fhir_client import GENERIC_FAILURE
from tests.adapters.cdshooks.build import FhirTestServer, authorization, closed_port_url, hook_call, synthea_server_data
from tests.api.helpers import assert_problem
from tests.credentials import CREDENTIALS

URL = "/cds-services/cbc-review"
PATIENT, OBSERVATIONS = synthea_server_data("Clemente_Kreiger")
PID = PATIENT["id"]
#: The dripping server's answer ends after this many bytes (~10 s), so a client without a deadline does not hang.
DRIP_BYTES = 200


def client_id(app: Flask) -> str:
    """The CDS client the test client calls as: its API key (tests/credentials.py)."""
    return f"api_key:{app.extensions[CREDENTIALS].key_name}"


def allow(app: Flask, *urls: str, client: str | None = None, networks: str = "") -> None:
    app.config["CDS_FHIR_SERVERS"] = json.dumps({client or client_id(app): list(urls)})
    app.config["CDS_FHIR_PRIVATE_NETWORKS"] = networks


def call(app: Flask, fhir_server: str) -> Any:
    body = hook_call(PID, fhirServer=fhir_server, fhirAuthorization=authorization("tok-secret"))
    return app.test_client().post(URL, json=body)


def refusal(response: Any) -> tuple[int, str, dict[str, list[str]]]:
    body = assert_problem(response, 412)
    assert "tok-secret" not in response.get_data(as_text=True)
    return body["status"], body["detail"], body["errors"]


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer([PATIENT], OBSERVATIONS).running() as running:
        yield running


@contextmanager
def hostile_server(kind: str) -> Iterator[str]:
    """A loopback HTTP server that answers every GET with `kind`: "huge" (more than the cap, no
    Content-Length), or "drip" (headers, then one byte every 50 ms until the client hangs up)."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            try:
                if kind == "huge":
                    self.wfile.write(b'{"resourceType": "Patient", "x": "' + b"a" * 300_000 + b'"}')
                    return
                self.wfile.write(b'{"resourceType": "Patient", "x": "')
                for _ in range(DRIP_BYTES):  # one byte every 50 ms, far under any per-read timeout
                    if stop.wait(0.05):
                        return
                    self.wfile.write(b"a")
                    self.wfile.flush()
                self.wfile.write(b'"}')  # a guard: a client without a deadline gets its answer after ~10 s
            except OSError:
                return  # the client hung up: what the test wants

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


#: What the service reads from a fhirServer when nothing is prefetched: the patient, the CBC Observations, and the
#: optional medication keys (treatment context, clinical-rules §11; heparin, §12), sorted by resource type.
RESOURCES_READ = ["MedicationRequest", "MedicationStatement", "Observation", "Patient"]


def test_an_allowlisted_loopback_fhir_server_is_read(app, server):
    allow(app, server.base_url)
    response = call(app, server.base_url)
    assert response.status_code == 200, response.get_data(as_text=True)
    # The patient, their CBC Observations and (not prefetched: optional keys) their medications, each with the token.
    assert sorted(r["path"].split("/")[2] for r in server.requests) == RESOURCES_READ
    assert [r["authorization"] for r in server.requests] == ["Bearer tok-secret"] * len(RESOURCES_READ)


def test_the_allowlist_matches_a_base_url_however_it_is_spelled(app, server):
    allow(app, server.base_url.replace("http://", "HTTP://") + "/")
    assert call(app, server.base_url).status_code == 200


def test_a_fhir_server_not_on_the_allowlist_is_never_contacted(app, server):
    allow(app)  # the client has no FHIR server
    assert refusal(call(app, server.base_url))[2] == {"fhirServer": [GENERIC_FAILURE]}
    assert server.requests == []


def test_without_any_allowlist_no_fhir_server_is_read(app, server):
    refusal(call(app, server.base_url))
    assert server.requests == []


def test_another_clients_allowlist_does_not_apply(app, server):
    allow(app, server.base_url, client="api_key:someone-else")
    refusal(call(app, server.base_url))
    assert server.requests == []


def test_the_allowlist_for_every_client(app, server):
    allow(app, server.base_url, client="*")
    assert call(app, server.base_url).status_code == 200


def test_not_allowlisted_closed_port_no_dns_redirect_and_private_address_answer_alike(app, server):
    """The same 412 for: the real server not allowlisted, a closed port, a host that does not resolve, a
    redirect (to the real server), and a host name that resolves to loopback, the last four allowlisted."""
    closed = closed_port_url()
    nowhere = "http://fhir.does-not-exist.invalid/fhir"
    by_name = server.base_url.replace("127.0.0.1", "localhost")
    with FhirTestServer([], [], redirect_to=server.base_url).running() as front:
        allow(app, closed, nowhere, front.base_url, by_name)
        answers = [refusal(call(app, url)) for url in (server.base_url, closed, nowhere, front.base_url, by_name)]
        assert [r["authorization"] for r in front.requests] == ["Bearer tok-secret"]  # one try, not followed
    assert server.requests == []  # neither redirected to nor reached through "localhost"
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][2] == {"fhirServer": [GENERIC_FAILURE]}


def test_a_host_name_on_a_listed_private_network_is_read(app, server):
    by_name = server.base_url.replace("127.0.0.1", "localhost")
    allow(app, by_name, networks="127.0.0.0/8, ::1/128")
    response = call(app, by_name)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(server.requests) == len(RESOURCES_READ)


def test_an_answer_larger_than_the_cap_is_refused(app):
    with hostile_server("huge") as url:
        allow(app, url)
        app.config["CDS_FHIR_MAX_BYTES"] = 100_000
        assert refusal(call(app, url))[2] == {"fhirServer": [GENERIC_FAILURE]}


def test_a_server_that_drips_bytes_is_cut_off_at_the_deadline(app):
    with hostile_server("drip") as url:
        allow(app, url)
        app.config["CDS_FHIR_TIMEOUT"] = 1  # in all; each byte comes well within any per-read timeout
        assert refusal(call(app, url))[2] == {"fhirServer": [GENERIC_FAILURE]}


@pytest.mark.parametrize(
    "setting",
    [
        '{"api_key:x": "http://one.example/fhir"}',
        '{"api_key:x": ["ftp://one.example/fhir"]}',
        '{"api_key:x": ["http://user:pw@one.example/fhir"]}',
        "[]",
        "{not json",
    ],
)
def test_a_malformed_allowlist_stops_the_app(make_app, setting):
    with pytest.raises(ValueError, match="CDS_FHIR_SERVERS"):
        make_app(CDS_FHIR_SERVERS=setting)


def test_a_malformed_private_network_stops_the_app(make_app):
    with pytest.raises(ValueError, match="CDS_FHIR_PRIVATE_NETWORKS"):
        make_app(CDS_FHIR_PRIVATE_NETWORKS="10.0.0.0/8, intranet")
