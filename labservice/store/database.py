"""The database: URL resolution (SQLite file by default, PostgreSQL by DATABASE_URL), engine, sessions,
and migrating to the newest schema with Alembic.

The engine is built to survive the database going away: PostgreSQL connections are tested before each
use (`pool_pre_ping`), so after a restart the pool reconnects by itself, and connecting gives up after
`connect_timeout` seconds instead of hanging. SQLite waits `busy_timeout` seconds for another writer (a
batch is stored in one transaction, which holds SQLite's single write lock until it commits).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from labservice.store import json_text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_SQLITE_NAME = "labservice.sqlite"
#: Seconds to wait for a PostgreSQL connection before the request fails (503) rather than hangs.
CONNECT_TIMEOUT = 5
#: Seconds a SQLite statement waits for another connection's write lock before it fails (503): below gunicorn's
#: 30 s worker timeout, so the request still answers (a wait as long as that timeout got its worker killed).
BUSY_TIMEOUT = 20
#: TCP keepalive on PostgreSQL connections: a server that vanished without closing the socket is noticed
#: after about idle + interval x count seconds instead of never.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def database_url(configured: str | None, instance_path: str | Path) -> str:
    """DATABASE_URL when set (postgres:// and postgresql:// use psycopg 3), else the instance SQLite file."""
    if not configured:
        return f"sqlite:///{Path(instance_path) / DEFAULT_SQLITE_NAME}"
    for prefix in ("postgres://", "postgresql://"):
        if configured.startswith(prefix):
            return "postgresql+psycopg://" + configured[len(prefix) :]
    return configured


def make_engine(url: str, *, connect_timeout: int = CONNECT_TIMEOUT, busy_timeout: int = BUSY_TIMEOUT) -> Engine:
    """An engine that reconnects after the database comes back and never waits without bound."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout}, json_serializer=json_text.dumps)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:  # foreign keys and concurrent readers
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, int] = {}
    if url.startswith("postgresql+psycopg"):
        connect_args = {"connect_timeout": connect_timeout, **KEEPALIVES}
    # pool_timeout: a request waits at most this long for a free pooled connection (then 503).
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=connect_timeout * 2,
        connect_args=connect_args,
        json_serializer=json_text.dumps,
    )


def answers(url: str, *, connect_timeout: int = CONNECT_TIMEOUT) -> bool:
    """True when a connection to `url` can be opened now (SQLite: always)."""
    if url.startswith("sqlite"):
        return True
    engine = make_engine(url, connect_timeout=connect_timeout)
    try:
        with engine.connect():
            return True
    except (exc.OperationalError, exc.InterfaceError):
        return False
    finally:
        engine.dispose()


def migrate_if_it_answers(url: str, *, connect_timeout: int = CONNECT_TIMEOUT) -> bool:
    """Migrate at start-up, unless the database cannot be reached: then say so (False) and start anyway.

    gunicorn stops altogether when a worker fails to start, so a worker that replaces a dead one while the
    database is away must start without it (its requests answer 503 until the database is back). So must one
    whose database goes away while it migrates (it answered, then the connection was lost: a worker booting
    while PostgreSQL shuts down). A database that answers but cannot be migrated still stops the start."""
    if not answers(url, connect_timeout=connect_timeout):
        logging.getLogger(__name__).warning(
            "the database does not answer: not migrated at start-up; requests answer 503 until it does"
        )
        return False
    try:
        migrate(url)
    except (exc.OperationalError, exc.InterfaceError) as error:
        logging.getLogger(__name__).warning(
            "the database went away while it was migrated at start-up (%s); requests answer 503 until it is back",
            type(error).__name__,
        )
        return False
    return True


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (creating the SQLite file's folder)."""
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def connect(cls, url: str, *, connect_timeout: int = CONNECT_TIMEOUT, busy_timeout: int = BUSY_TIMEOUT) -> Database:
        engine = make_engine(url, connect_timeout=connect_timeout, busy_timeout=busy_timeout)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end of the block, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def answers(self) -> bool:
        """True when the database answers a trivial query now (for /healthz); never raises."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # any failure to reach or use the database means: it does not answer
            return False
        return True

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("alembic_version")
