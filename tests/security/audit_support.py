"""Helpers for the audit, logging, rate-limit, header and escaping tests."""

from __future__ import annotations

import copy
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from labservice.examples import CONTRACT_EXAMPLE
from labservice.security.keys import create_key
from labservice.store.database import Database, migrate
from labservice.store.models import AuditEvent
from tests.credentials import CREDENTIALS


def database(app: Flask):
    return app.extensions["labservice.database"]


def audit_rows(app: Flask) -> list[dict[str, Any]]:
    """Every audit row, oldest first, as dicts."""
    with database(app).session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [
            {
                "actor_type": e.actor_type,
                "actor": e.actor,
                "action": e.action,
                "patient": e.patient_external_id,
                "resource": e.resource,
                "status": e.status,
                "remote_addr": e.remote_addr,
                "request_id": e.request_id,
                "at": e.at,
            }
            for e in events
        ]


def new_rows(app: Flask, before: int) -> list[dict[str, Any]]:
    return audit_rows(app)[before:]


def key_name(app: Flask) -> str:
    """The name of the all-scope key the app's test client sends (tests/credentials.py)."""
    return app.extensions[CREDENTIALS].key_name


def username(app: Flask) -> str:
    return app.extensions[CREDENTIALS].username


def new_key(app: Flask, *scopes: str, name: str | None = None) -> str:
    """A fresh API key with these scopes; its token."""
    with database(app).session() as session:
        return create_key(session, name or f"k-{uuid.uuid4().hex[:10]}", scopes).token


def bearer_client(app: Flask, token: str) -> FlaskClient:
    """A client that sends only this key (no dashboard session)."""
    client = FlaskClient(app, app.response_class, use_cookies=False)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def cbc(patient: str | None, **patient_fields: Any) -> dict[str, Any]:
    """The contract example (urgent: it opens a referral when stored) for this patient id."""
    body = copy.deepcopy(CONTRACT_EXAMPLE)
    if patient is None:
        body.pop("patient", None)
    else:
        body["patient"] = {**body.get("patient", {}), "id": patient, **patient_fields}
    return body


def csv_upload(text: str, filename: str = "results.csv", mapping: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"file": (io.BytesIO(text.encode("utf-8")), filename)}
    if mapping is not None:
        data["mapping"] = mapping
    return data


def wide_csv(rows: list[tuple[str, float]]) -> str:
    """A wide CSV: patient id and platelets, with Hb and WBC, one collection day per row."""
    lines = ["patient_id,collected_at,PLT,HGB (g/L),WBC"]
    for i, (patient, platelets) in enumerate(rows):
        lines.append(f"{patient},2026-11-{10 + i % 18:02d}T08:00:00Z,{platelets},120,5.0")
    return "\n".join(lines) + "\n"


# --- a real gunicorn ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_database(tmp_path: Path) -> tuple[str, str]:
    """A migrated SQLite database with an all-scope key: (url, token)."""
    url = f"sqlite:///{tmp_path / 'labservice.sqlite'}"
    migrate(url)
    db = Database.connect(url)
    try:
        with db.session() as session:
            token = create_key(session, "gunicorn-test", ("interpret", "read", "admin")).token
    finally:
        db.engine.dispose()
    return url, token


def start_gunicorn(
    tmp_path: Path, url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int, Path, Path]:
    """gunicorn (2 workers, the repository's gunicorn.conf.py) on a free port: (process, port, stdout, stderr)."""
    port = free_port()
    environ = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_AUTO_MIGRATE": "false",
        "LABSERVICE_BATCH_DIRECTORY": str(tmp_path / "batches"),
        **(env or {}),
    }
    out, err = tmp_path / f"stdout-{port}", tmp_path / f"stderr-{port}"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", *extra, "wsgi:app"],
            cwd=ROOT,
            env=environ,
            stdout=stdout,
            stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"gunicorn did not start: {err.read_text()}") from None
            time.sleep(0.2)
    return server, port, out, err
