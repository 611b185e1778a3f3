"""referral status changes: the free-text "on behalf of" name an API caller sends, kept apart from the actor,
which is now the authenticated caller

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referral_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("on_behalf_of", sa.String(length=200), nullable=True))
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_on_behalf_of", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_column("status_on_behalf_of")
    with op.batch_alter_table("referral_events", schema=None) as batch_op:
        batch_op.drop_column("on_behalf_of")
