"""Patient reports: symptoms, assisted hypos, ketones, medication changes and standing BP recorded by
the care team, kept across restarts (rule input for BP-CRIT-3, BP-LOW-1/2, GLU-HYPO-3, GLU-HIGH-3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patient_reports",
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symptoms", sa.JSON(), nullable=False),
        sa.Column("ketones_mmol_l", sa.Float(), nullable=True),
        sa.Column("seated_systolic_mmhg", sa.Float(), nullable=True),
        sa.Column("standing_systolic_mmhg", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_patient_reports_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_patient_reports")),
    )
    with op.batch_alter_table("patient_reports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patient_reports_patient_id_reported_at", ["patient_id", "reported_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("patient_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_reports_patient_id_reported_at")

    op.drop_table("patient_reports")
