"""initial schema: patients, CBC results, interpretations, batches, referrals

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 16:45:50.013151
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows_in", sa.Integer(), nullable=False),
        sa.Column("rows_out", sa.Integer(), nullable=False),
        sa.Column("interpreted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_content_sha256"), ["content_sha256"], unique=False)

    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("sex", sa.String(length=10), nullable=True),
        sa.Column("age_years", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_table(
        "cbc_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("age_years", sa.Float(), nullable=True),
        sa.Column("platelets", sa.Float(), nullable=True),
        sa.Column("wbc", sa.Float(), nullable=True),
        sa.Column("neutrophils", sa.Float(), nullable=True),
        sa.Column("lymphocytes", sa.Float(), nullable=True),
        sa.Column("hemoglobin", sa.Float(), nullable=True),
        sa.Column("hematocrit", sa.Float(), nullable=True),
        sa.Column("rbc", sa.Float(), nullable=True),
        sa.Column("mcv", sa.Float(), nullable=True),
        sa.Column("reticulocytes", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "fingerprint", name="uq_cbc_results_patient_fingerprint"),
    )
    with op.batch_alter_table("cbc_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cbc_results_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index("ix_cbc_results_patient_collected", ["patient_id", "collected_at"], unique=False)

    op.create_table(
        "interpretations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cbc_id", sa.Integer(), nullable=False),
        sa.Column("ruleset_version", sa.String(length=40), nullable=False),
        sa.Column("urgency", sa.String(length=12), nullable=False),
        sa.Column("urgency_rank", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("not_assessed", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("delta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cbc_id"], ["cbc_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cbc_id", "ruleset_version", name="uq_interpretations_cbc_ruleset"),
    )
    with op.batch_alter_table("interpretations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_interpretations_cbc_id"), ["cbc_id"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("interpretation_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("urgency", sa.String(length=12), nullable=False),
        sa.Column("urgency_rank", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("finding_codes", sa.String(length=600), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status_by", sa.String(length=200), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["interpretation_id"], ["interpretations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index("ix_referrals_patient_status", ["patient_id", "status"], unique=False)
        batch_op.create_index("ix_referrals_worklist", ["status", "urgency_rank", "collected_at"], unique=False)
        batch_op.create_index(
            "uq_referrals_one_open",
            ["patient_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('new', 'acknowledged')"),
            sqlite_where=sa.text("status IN ('new', 'acknowledged')"),
        )

    op.create_table(
        "referral_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referral_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=12), nullable=False),
        sa.Column("to_status", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["referral_id"], ["referrals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referral_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_events_referral_id"), ["referral_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("referral_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_events_referral_id"))

    op.drop_table("referral_events")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index("uq_referrals_one_open")
        batch_op.drop_index("ix_referrals_worklist")
        batch_op.drop_index("ix_referrals_patient_status")

    op.drop_table("referrals")
    with op.batch_alter_table("interpretations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interpretations_cbc_id"))

    op.drop_table("interpretations")
    with op.batch_alter_table("cbc_results", schema=None) as batch_op:
        batch_op.drop_index("ix_cbc_results_patient_collected")
        batch_op.drop_index(batch_op.f("ix_cbc_results_batch_id"))

    op.drop_table("cbc_results")
    op.drop_table("patients")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_content_sha256"))

    op.drop_table("batches")
