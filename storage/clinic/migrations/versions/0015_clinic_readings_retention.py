"""A clinic's own retention of raw readings (`clinics.readings_retention_days`): a clinic under a
jurisdiction or contract that asks for a shorter or longer period than the deployment's
`retention.readings_days` sets its own; NULL (every existing clinic) keeps the deployment's.

A plain nullable ADD COLUMN, never Alembic's batch mode (0007 says why).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clinics", sa.Column("readings_retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("clinics", "readings_retention_days")
