"""critical_communications: the record of communicating a referral's critical result (who was notified, when,
by what means, read-back, or not reached), as CLSI GP47 and RCPath G158 expect

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "critical_communications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("notified", sa.String(length=200), nullable=False),
        sa.Column("means", sa.String(length=20), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("read_back", sa.Boolean(), nullable=False),
        sa.Column("communicated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["referral_id"], ["referrals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_critical_communications_referral_id", "critical_communications", ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_critical_communications_referral_id", table_name="critical_communications")
    op.drop_table("critical_communications")
