"""Test databases: a throw-away PostgreSQL database per run, emptied between tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text

from labservice.store.database import database_url, migrate
from labservice.store.models import Base


def throwaway_postgresql(base_url: str) -> Iterator[str | None]:
    """Create labservice_test_<random> on the server at base_url, migrate it, yield its URL, drop it."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a test dependency
        yield None
        return
    conninfo = base_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"labservice_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield None
        return
    url = database_url(conninfo.rsplit("/", 1)[0] + f"/{name}", "")
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    """Delete every row (children first), keeping the schema and the Alembic version."""
    engine = create_engine(url)
    with engine.begin() as connection:
        names = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
