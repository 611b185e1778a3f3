"""Which database the service uses (issue 4 §1): database_url(), DATABASE_URL, and the default SQLite file.

From the issue and config.py's contract: no URL means the SQLite file labservice.sqlite in the instance
folder; postgres:// and postgresql:// URLs (as platforms set them) are used with psycopg 3
(postgresql+psycopg://); other URLs are used as given; DATABASE_URL without the LABSERVICE_ prefix is
honoured, and LABSERVICE_DATABASE_URL wins when both are set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from labservice.app import create_app
from labservice.config import load_settings
from labservice.store.database import Database, database_url, make_engine
from labservice.store.models import Base, CbcResult
from tests.credentials import add_test_credentials

P = pytest.param
LABSERVICE = Path(sys.executable).parent / "labservice"


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        P("", "sqlite:////srv/labservice/instance/labservice.sqlite", id="empty: the instance SQLite file"),
        P(None, "sqlite:////srv/labservice/instance/labservice.sqlite", id="None: the instance SQLite file"),
        P(
            "postgres://lab:secret@db.example:5432/labservice",
            "postgresql+psycopg://lab:secret@db.example:5432/labservice",
            id="postgres:// (Heroku style) uses psycopg 3",
        ),
        P(
            "postgresql://lab@db/labservice",
            "postgresql+psycopg://lab@db/labservice",
            id="postgresql:// uses psycopg 3",
        ),
        P(
            "postgres://lab@db/labservice?sslmode=require",
            "postgresql+psycopg://lab@db/labservice?sslmode=require",
            id="the query string is kept",
        ),
        P(
            "postgresql+psycopg://lab@db/labservice",
            "postgresql+psycopg://lab@db/labservice",
            id="already postgresql+psycopg: unchanged",
        ),
        P(
            "sqlite:////var/lib/labservice/lab.sqlite",
            "sqlite:////var/lib/labservice/lab.sqlite",
            id="another SQLite file: unchanged",
        ),
    ],
)
def test_database_url(configured: str | None, expected: str) -> None:
    assert database_url(configured, "/srv/labservice/instance") == expected
    assert database_url(configured, Path("/srv/labservice/instance")) == expected


def test_only_the_scheme_is_rewritten() -> None:
    url = "postgres://u:p%40ss@host/postgres_db"
    assert database_url(url, "/x") == "postgresql+psycopg://u:p%40ss@host/postgres_db"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        P({}, "", id="nothing set: empty (the instance SQLite file)"),
        P(
            {"DATABASE_URL": "postgres://lab@db/labservice"},
            "postgres://lab@db/labservice",
            id="DATABASE_URL without prefix is honoured",
        ),
        P({"LABSERVICE_DATABASE_URL": "sqlite:////a.sqlite"}, "sqlite:////a.sqlite", id="LABSERVICE_DATABASE_URL"),
        P(
            {"DATABASE_URL": "postgres://lab@db/x", "LABSERVICE_DATABASE_URL": "sqlite:////a.sqlite"},
            "sqlite:////a.sqlite",
            id="LABSERVICE_DATABASE_URL wins over DATABASE_URL",
        ),
        P(
            {"DATABASE_URL": "postgres://lab@db/x", "LABSERVICE_DATABASE_URL": ""},
            "postgres://lab@db/x",
            id="an empty LABSERVICE_DATABASE_URL does not hide DATABASE_URL",
        ),
    ],
)
def test_load_settings_database_url(environ: dict[str, str], expected: str) -> None:
    assert load_settings(environ)["DATABASE_URL"] == expected


def test_the_app_uses_database_url_from_the_environment(database_url: str, tmp_path: Path, monkeypatch) -> None:
    # PostgreSQL in the postgres:// form a platform sets; SQLite as is.
    given = database_url.replace("postgresql+psycopg://", "postgres://")
    monkeypatch.setenv("DATABASE_URL", given)
    monkeypatch.delenv("LABSERVICE_DATABASE_URL", raising=False)
    app = create_app({"TESTING": True, "BATCH_DIRECTORY": str(tmp_path / "batches")})
    add_test_credentials(app)
    assert app.config["DATABASE_URL"] == database_url
    answer = app.test_client().post(
        "/api/v1/interpretations",
        json={"patient": {"id": "P-ENV"}, "collected_at": "2026-11-01T08:00:00Z", "results": {"platelets": 250}},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    database = Database.connect(database_url)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(CbcResult)) == 1
    database.engine.dispose()


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LABSERVICE_DATABASE_URL")}
    return {**env, **extra}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("source", ["default", "DATABASE_URL"])
def test_init_db_without_url(tmp_path: Path, source: str) -> None:
    """Without --url, init-db migrates DATABASE_URL, else instance/labservice.sqlite under the working folder."""
    target = tmp_path / "instance" / "labservice.sqlite"
    env = _environment()
    if source == "DATABASE_URL":
        target = tmp_path / "elsewhere" / "lab.sqlite"
        env["DATABASE_URL"] = f"sqlite:///{target}"
    done = subprocess.run(
        [str(LABSERVICE), "init-db"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert target.exists()
    assert _tables(f"sqlite:///{target}") == set(Base.metadata.tables) | {"alembic_version"}
    if source == "DATABASE_URL":
        assert not (tmp_path / "instance").exists()


def test_a_sqlite_write_gives_up_on_the_lock_before_gunicorn_gives_up_on_the_worker() -> None:
    """A write waiting for SQLite's lock fails with 503 after DATABASE_BUSY_TIMEOUT; gunicorn kills a worker silent
    for its `timeout` (30 s by default) and the client's connection is cut without an answer. The first must come
    first, with time to answer."""
    from gunicorn.config import Config

    from labservice.config import load_settings
    from labservice.store.database import BUSY_TIMEOUT

    gunicorn_timeout = Config().timeout
    assert load_settings({})["DATABASE_BUSY_TIMEOUT"] <= gunicorn_timeout - 5
    assert gunicorn_timeout - 5 >= BUSY_TIMEOUT
