"""Per-patient targets gain what the rules already read from them: BP titration and insulin (DQ-01
stale data after 3 days, as a warning) and the patient's own time zone (morning/evening readings and
day boundaries), which until now came from the clinic for every patient.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient_targets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bp_titration", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("on_insulin", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient_targets", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("on_insulin")
        batch_op.drop_column("bp_titration")
