"""Structured JSON logs with a request id, and no patient data in them: in process, and under real gunicorn."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labservice.serving.log_lines import JsonFormatter, configure_logging
from tests.adapters.hl7v2.samples import NHAPI_ORU, replace_field, text
from tests.credentials import csrf_token
from tests.security.audit_support import cbc, csv_upload, key_name, seed_database, start_gunicorn, wide_csv

ROOT = Path(__file__).resolve().parents[2]
#: A patient id we can recognise anywhere in the logs.
SECRET = "MRN-SECRET-7731"
ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "principal",
    "remote_addr",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged, as the service's JSON handler writes it."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("INFO", stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines_of(stream) if line["logger"] == "labservice.access"]


@pytest.fixture
def app(make_app):
    app = make_app(PROPAGATE_EXCEPTIONS=False)  # an unexpected error answers 500 as in production

    @app.get("/api/v1/boom/<path:patient_id>")
    def boom(patient_id: str):  # an unexpected error whose message quotes what the client sent
        raise ValueError(f"cannot handle patient {patient_id}")

    from labservice.middleware.auth import ENDPOINT_SCOPES

    ENDPOINT_SCOPES.setdefault("boom", ("read",))
    yield app
    ENDPOINT_SCOPES.pop("boom", None)


def hostile_requests(client) -> list[Any]:
    """Requests carrying SECRET in paths, query strings, bodies, headers and errors; their responses."""
    hostile_headers = {"User-Agent": SECRET, "Referer": f"https://ehr.example.org/chart/{SECRET}", "X-User": SECRET}
    bad_value = cbc(SECRET)
    bad_value["results"]["platelets"] = {"value": f"{SECRET}", "unit": "10*3/uL"}
    return [
        client.post("/api/v1/interpretations", json=cbc(SECRET), headers=hostile_headers),
        client.post("/api/v1/interpretations", json=bad_value),
        client.post(
            "/api/v1/interpretations", data=f'{{"patient": {{"id": "{SECRET}"', content_type="application/json"
        ),
        client.get(f"/api/v1/patients/{SECRET}/results?note={SECRET}", headers=hostile_headers),
        client.get(f"/api/v1/patients/{SECRET}-unknown/results"),
        client.post(f"/api/v1/patients/{SECRET}/results"),
        client.get(f"/api/v1/referrals?patient={SECRET}"),
        client.get(f"/api/v1/referrals?patient={SECRET}&urgency={SECRET}"),
        client.get(f"/dashboard/patients/{SECRET}"),
        client.get(f"/dashboard/?finding={SECRET}"),
        client.get(f"/nowhere/{SECRET}"),
        client.get(f"/api/v1/boom/{SECRET}"),
        client.post("/api/v1/batches", data=csv_upload(wide_csv([(SECRET, 40)]), filename=f"{SECRET}.csv")),
        client.post("/api/v1/batches", data=csv_upload(f"{SECRET}\n{SECRET}\n", filename=f"{SECRET}.csv")),
        client.post(
            "/api/v1/hl7v2/interpret",
            data=replace_field(text(NHAPI_ORU), ("PID", 1), 3, SECRET),
            content_type="x-application/hl7-v2+er7",
        ),
        client.post(
            "/api/v1/hl7v2/interpret",
            data=replace_field(text(NHAPI_ORU), ("OBX", 1), 6, f"per-{SECRET}"),
            content_type="x-application/hl7-v2+er7",
        ),
        client.post(
            "/dashboard/batches",
            data={
                **csv_upload(wide_csv([(SECRET, 50)])),
                "mapping": f'{{"columns": {{"{SECRET}": "platelets"}}}}',
                "csrf_token": csrf_token(client),
            },
        ),
    ]


def test_no_patient_data_in_any_log_line(app, client, captured):
    responses = hostile_requests(client)
    assert responses[0].status_code == 200 and responses[3].status_code == 200
    assert responses[11].status_code == 500  # the unexpected error was logged, see below
    assert SECRET in responses[15].get_data(as_text=True)  # the 422 names the unit; the log must not
    assert SECRET in responses[3].get_data(as_text=True)  # the answers do carry it: the logs must not
    logged = captured.getvalue()
    assert logged and SECRET not in logged
    assert SECRET.lower() not in logged.lower()


def test_one_json_line_per_request_with_its_route_status_duration_principal_and_address(app, client, captured):
    responses = hostile_requests(client)
    lines = access_lines(captured)
    assert len(lines) == len(responses)
    for line, response in zip(lines, responses, strict=True):
        assert set(line) >= ACCESS_FIELDS, line
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert line["status"] == response.status_code
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        if response.status_code in (404, 405) and line["route"] == "<no route>":
            assert line["principal"] == "anonymous:anonymous"  # no route: authentication does not run
        else:
            assert line["principal"] == f"api_key:{key_name(app)}" or line["principal"].startswith("user:")
        assert line["remote_addr"] == "127.0.0.1"
        assert line["level"] == ("warning" if response.status_code >= 500 else "info")
    routes = [(line["method"], line["route"]) for line in lines]
    assert ("GET", "/api/v1/patients/<path:patient_id>/results") in routes
    assert ("GET", "/dashboard/patients/<patient_id:external_id>") in routes
    assert ("GET", "<no route>") in routes  # a 404: the path is not logged


def test_an_unhandled_exception_is_logged_with_its_route_type_and_frames_not_its_message(app, client, captured):
    response = client.get(f"/api/v1/boom/{SECRET}")
    assert response.status_code == 500
    [error] = [line for line in lines_of(captured) if line["level"] == "error"]
    assert error["message"] == "unhandled exception in GET /api/v1/boom/<path:patient_id>"
    assert error["exception"]["type"] == "builtins.ValueError"
    assert any("in boom" in frame for frame in error["exception"]["frames"])
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert SECRET not in json.dumps(error)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("3f2c9a1e-7b1d-4c55-9d1e-0f3b8e2a1c77", True),
        ("lis.batch:42_7-a", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("has space", False),
        ("<script>alert(1)</script>", False),
        ("", False),
        ("-starts-with-dash", False),
    ],
)
def test_x_request_id_is_kept_when_it_is_a_sane_token_and_echoed(client, captured, sent, kept):
    response = client.get("/healthz", headers={"X-Request-ID": sent} if sent else {})
    echoed = response.headers["X-Request-ID"]
    assert (echoed == sent) is kept
    if not kept:
        assert len(echoed) == 32 and int(echoed, 16) >= 0
    [line] = access_lines(captured)
    assert line["request_id"] == echoed


def test_every_answer_has_a_request_id_even_errors_and_refusals(app, anonymous_client):
    for response in (
        anonymous_client.get("/api/v1/referrals"),
        anonymous_client.get("/nowhere"),
        anonymous_client.delete("/healthz"),
    ):
        assert response.status_code in (401, 404, 405)
        assert len(response.headers["X-Request-ID"]) == 32


def test_the_json_formatter_keeps_exception_types_not_messages():
    try:
        int(SECRET)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["exception"]["type"] == "builtins.ValueError" and SECRET not in json.dumps(line)
    assert line["level"] == "error" and line["message"] == "failed"


# --- under gunicorn ------------------------------------------------------------------------------


def _call(
    port: int,
    method: str,
    path: str,
    token: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)


def _exercise(port: int, token: str) -> list[int]:
    hostile = {"User-Agent": SECRET, "Referer": f"https://ehr/{SECRET}", "X-Request-ID": "gunicorn-test-1"}
    return [
        _call(port, "POST", "/api/v1/interpretations", token, json.dumps(cbc(SECRET)).encode(), headers=hostile),
        _call(port, "GET", f"/api/v1/patients/{SECRET}/results?q={SECRET}", token, headers=hostile),
        _call(port, "GET", f"/api/v1/referrals?patient={SECRET}", token),
        _call(port, "GET", f"/nowhere/{SECRET}", token),
        _call(port, "GET", f"/api/v1/patients/{SECRET}/results", "lsk_wrong_key"),
        _call(port, "POST", "/api/v1/interpretations", token, b'{"patient": {"id": "' + SECRET.encode()),
    ]


def test_gunicorn_writes_json_lines_without_patient_data(tmp_path):
    url, token = seed_database(tmp_path)
    server, port, out, err = start_gunicorn(tmp_path, url)
    try:
        statuses = _exercise(port, token)
    finally:
        _stop(server)
    assert statuses == [200, 200, 200, 404, 401, 400]
    logged = err.read_text() + out.read_text()
    assert SECRET not in logged
    lines = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "labservice.access" and line["route"] != "/healthz"]
    assert [line["status"] for line in access] == statuses
    assert access[1]["route"] == "/api/v1/patients/<path:patient_id>/results"
    assert access[0]["request_id"] != "" and any(line["request_id"] == "gunicorn-test-1" for line in access)
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # gunicorn's own records are JSON too


def test_gunicorn_log_level_warning_leaves_out_request_lines_and_its_access_log_has_no_urls(tmp_path):
    url, token = seed_database(tmp_path)
    server, port, out, err = start_gunicorn(tmp_path, url, "--log-level", "warning", "--access-logfile", "-")
    try:
        statuses = _exercise(port, token)
    finally:
        _stop(server)
    assert statuses == [200, 200, 200, 404, 401, 400]
    assert "labservice.access" not in err.read_text()
    access = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(access) >= len(statuses)  # gunicorn's own access log, as asked
    assert all(line["logger"] == "gunicorn.access" for line in access)
    messages = " ".join(line["message"] for line in access)
    assert SECRET not in messages and "?" not in messages and "request_id=gunicorn-test-1" in messages
    # Each line names the route template, never the path as sent: a 404 has no route. (Two
    # workers write the lines after answering, so their order may differ from the requests'.)
    routes = [line["message"].split('"')[1] for line in access if '"GET /healthz"' not in line["message"]]
    assert sorted(routes) == sorted(
        [
            "POST /api/v1/interpretations",
            "GET /api/v1/patients/<path:patient_id>/results",
            "GET /api/v1/referrals",
            "GET <no route>",
            "GET /api/v1/patients/<path:patient_id>/results",
            "POST /api/v1/interpretations",
        ]
    )


def test_the_mllp_listener_logs_json_without_patient_data(tmp_path):
    from tests.test_mllp import connect, frame, read_acks

    url = f"sqlite:///{tmp_path / 'labservice.sqlite'}"
    env = {**os.environ, "DATABASE_URL": url, "LABSERVICE_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    err = tmp_path / "mllp.stderr"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "labservice.cli", "mllp", "--host", "127.0.0.1", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        first = process.stdout.readline()
        port = int(first.rsplit(":", 1)[1])
        message = replace_field(text(NHAPI_ORU), ("PID", 1), 3, SECRET)
        bad = replace_field(message, ("OBX", 1), 6, f"per-{SECRET}")  # an unknown unit: the AE quotes it
        with connect(port) as connection:
            connection.sendall(frame(message.encode()) + frame(bad.encode()))
            acks = read_acks(connection, 2)
        assert [str(ack.segment("MSA")(1)) for ack in acks] == ["AA", "AE"]
        assert SECRET in str(acks[1])  # the ACK names the value to correct; the log must not
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    logged = err.read_text()
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]
    assert any(line["logger"] == "labservice.mllp" for line in lines)
    assert SECRET not in logged
