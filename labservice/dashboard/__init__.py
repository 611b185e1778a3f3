"""The dashboard: server-rendered pages (Jinja, inline SVG, one stylesheet, no build step) under /dashboard/.

`register_dashboard(app)` adds the blueprint, sends / to the worklist, and gives the app a secret key for
its flash messages when none is configured (SECRET_KEY, or a random key kept in the instance folder so
that every worker process of one installation signs with the same key).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask, redirect, url_for
from flask.typing import ResponseReturnValue

SECRET_FILE = "secret_key"


def register_dashboard(app: Flask) -> None:
    from labservice.dashboard import batch_pages  # noqa: F401 (its routes are on the blueprint)
    from labservice.dashboard.views import PatientIdConverter, bp

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(Path(app.instance_path))
    app.url_map.converters["patient_id"] = PatientIdConverter  # before the blueprint's rules use it
    app.register_blueprint(bp)
    app.add_url_rule("/", "index", index)


def index() -> ResponseReturnValue:
    return redirect(url_for("dashboard.worklist_page"))


def instance_secret(folder: Path) -> str:
    """The key in <instance>/secret_key, made once (atomically: workers starting together agree on one)."""
    path = folder / SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".secret-")
    try:
        with os.fdopen(handle, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
        os.chmod(temporary, 0o600)
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is the key
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_text(encoding="ascii").strip()
