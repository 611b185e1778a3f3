"""batches: whether the upload stored its CBCs (part of its identity), who uploaded it, the bytes of its result
files and when they were purged (retention and per-key quota)

Every batch row before this one came from a storing upload (?store=false uploads had no row), hence the default
true. Their result bytes were not counted: 0.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("store_requested", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("owner", sa.String(length=220), nullable=True))
        batch_op.add_column(sa.Column("result_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_batches_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_batches_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_created_at"))
        batch_op.drop_index(batch_op.f("ix_batches_owner"))
        batch_op.drop_column("purged_at")
        batch_op.drop_column("result_bytes")
        batch_op.drop_column("owner")
        batch_op.drop_column("store_requested")
