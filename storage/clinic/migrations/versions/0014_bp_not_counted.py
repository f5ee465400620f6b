"""The panel's count of blood pressures left out of the 7-day home mean (`patient_summaries.
bp_not_counted_7d`): a patient whose only readings of the week fall on the first measured day, which
the home protocol discards, shows them as "not counted" rather than "no readings".

A plain nullable ADD COLUMN, never Alembic's batch mode (0007 says why). Existing rows are recomputed
because alerts.summary_updater.SUMMARY_VERSION changed with it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("patient_summaries", sa.Column("bp_not_counted_7d", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("patient_summaries", "bp_not_counted_7d")
