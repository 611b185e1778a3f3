"""sign-in locks per (user, address): guesses from one address lock that address out, not the user everywhere

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "address", name="uq_sign_in_locks_user_address"),
    )
    with op.batch_alter_table("sign_in_locks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_locks_user_id"), ["user_id"], unique=False)
    # The per-user lock of 0003 becomes a slow-down: a lock set under the old rule is lifted.
    op.execute("UPDATE users SET locked_until = NULL, failed_sign_ins = 0")


def downgrade() -> None:
    with op.batch_alter_table("sign_in_locks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_locks_user_id"))
    op.drop_table("sign_in_locks")
