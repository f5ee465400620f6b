"""Digest deliveries: which family doctor was sent which day's digest e-mail, so that neither a
retry, a restart the same day nor a second clinic process sends it twice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_deliveries",
        sa.Column("digest_delivery_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest_day", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_digest_deliveries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest_delivery_id", name=op.f("pk_digest_deliveries")),
        sa.UniqueConstraint("digest_day", "user_id", name=op.f("uq_digest_deliveries_digest_day_user_id")),
    )


def downgrade() -> None:
    op.drop_table("digest_deliveries")
