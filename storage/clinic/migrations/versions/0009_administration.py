"""Clinic administration: a patient's discharge time, the administrator's choice whether a meter's
earlier memory belongs to the patient it is bound to, and one-time password reset codes.

Existing bindings were made when every reading of a bound meter was attributed, whenever measured:
they keep that meaning (`prior_memory_belongs` true), so no reading still on its way from a gateway
is refused by the upgrade. New bindings default to false.

Plain ADD COLUMN / DROP COLUMN and CREATE TABLE, never Alembic's batch mode: on SQLite that rebuilds a
table by dropping it, and with foreign keys on, dropping `patients` first runs every ON DELETE rule
pointing at it (see 0007).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_LENGTH = 64  # storage.clinic.models.OPAQUE_ID_LENGTH


def upgrade() -> None:
    op.add_column("patients", sa.Column("discharged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "meter_bindings",
        sa.Column("prior_memory_belongs", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    bindings = sa.table("meter_bindings", sa.column("prior_memory_belongs", sa.Boolean()))
    op.get_bind().execute(bindings.update().values(prior_memory_belongs=True))
    op.create_table(
        "password_reset_codes",
        sa.Column("reset_code_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name="fk_password_reset_codes_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reset_code_id", name="pk_password_reset_codes"),
        sa.UniqueConstraint("code_hash", name="uq_password_reset_codes_code_hash"),
    )
    op.create_index("ix_password_reset_codes_user_id", "password_reset_codes", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_password_reset_codes_user_id", table_name="password_reset_codes")
    op.drop_table("password_reset_codes")
    # SQLite >= 3.35 drops a column in place (Debian 12: 3.40); PostgreSQL always has.
    op.execute("ALTER TABLE meter_bindings DROP COLUMN prior_memory_belongs")
    op.execute("ALTER TABLE patients DROP COLUMN discharged_at")
