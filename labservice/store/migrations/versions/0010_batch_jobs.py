"""batch_jobs and batch_job_chunks: CSV uploads run as jobs by a job worker, with their progress, and the chunks
whose rows are committed (so a job resumed after a crash stores no row twice)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=220), nullable=True),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("store_requested", sa.Boolean(), nullable=False),
        sa.Column("upload_path", sa.String(length=1000), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("interpreted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_jobs_status"), "batch_jobs", ["status"], unique=False)
    op.create_table(
        "batch_job_chunks",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["batch_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "chunk"),
    )


def downgrade() -> None:
    op.drop_table("batch_job_chunks")
    op.drop_index(op.f("ix_batch_jobs_status"), table_name="batch_jobs")
    op.drop_table("batch_jobs")
