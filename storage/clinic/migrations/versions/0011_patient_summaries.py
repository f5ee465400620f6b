"""The panel's figures per patient (`patient_summaries`), kept by alerts.summary_updater, so that the
doctors' panel is one sorted, paged query instead of thousands of summaries computed per request.

A new table only: existing rows elsewhere are untouched. It starts empty; the updater fills it at
start and keeps it current, and the panel computes a missing or expired row itself.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_LENGTH = 64  # storage.clinic.models.OPAQUE_ID_LENGTH


def upgrade() -> None:
    op.create_table(
        "patient_summaries",
        sa.Column("patient_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("summary_version", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reading_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bp_mean_systolic_mmhg", sa.Float(), nullable=True),
        sa.Column("bp_mean_diastolic_mmhg", sa.Float(), nullable=True),
        sa.Column("bp_readings", sa.Integer(), nullable=True),
        sa.Column("bp_days", sa.Integer(), nullable=True),
        sa.Column("bp_category", sa.String(length=16), nullable=True),
        sa.Column("bp_target_systolic_mmhg", sa.Float(), nullable=True),
        sa.Column("bp_target_diastolic_mmhg", sa.Float(), nullable=True),
        sa.Column("glucose_latest_mg_dl", sa.Float(), nullable=True),
        sa.Column("glucose_latest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("glucose_time_in_range_percent", sa.Float(), nullable=True),
        sa.Column("glucose_readings_14d", sa.Integer(), nullable=True),
        sa.Column("days_with_data_30", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_patient_summaries_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_summaries")),
    )


def downgrade() -> None:
    op.drop_table("patient_summaries")
