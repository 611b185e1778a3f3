"""sign-in: failed sign-in counter, lock and session cut-off on users; accepted CDS Hooks JWT ids

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_sign_ins", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sessions_valid_after", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "cds_jwt_ids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "jti", name="uq_cds_jwt_ids_issuer_jti"),
    )
    with op.batch_alter_table("cds_jwt_ids", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cds_jwt_ids_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cds_jwt_ids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_jwt_ids_expires_at"))
    op.drop_table("cds_jwt_ids")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("sessions_valid_after")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_sign_ins")
