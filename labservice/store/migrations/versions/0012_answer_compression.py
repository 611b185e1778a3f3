"""interpretations.answer compressed with lz4 on PostgreSQL: the stored answer (about 4 KB of JSON a CBC) is
compressed by TOAST, and pglz, the default, made a COPY of 20,000 answers take 0.99 s against 0.44 s with lz4
for the same size on disk (issue 12 item 1: the backend's share of storing a batch). Values already stored keep
their compression; new ones are written with lz4. SQLite has no TOAST: nothing to do there. A server built without
lz4 keeps pglz.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 02:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _lz4_available(bind: sa.engine.Connection) -> bool:
    names = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    return "lz4" in (names.scalar() or [])


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _lz4_available(bind):
        op.execute("ALTER TABLE interpretations ALTER COLUMN answer SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE interpretations ALTER COLUMN answer SET COMPRESSION DEFAULT")
