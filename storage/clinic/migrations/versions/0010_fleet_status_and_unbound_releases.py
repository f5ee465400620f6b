"""Fleet: each gateway's latest status report (`gateway_status`), and administrators' decisions on a
gateway's unbound readings (`unbound_releases`), sent to the gateway as commands.

New tables only, plain CREATE TABLE (never batch mode: see 0007 and 0009).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_LENGTH = 64  # storage.clinic.models.OPAQUE_ID_LENGTH
METER_KEY_LENGTH = 200  # storage.clinic.models.METER_KEY_LENGTH
REASON_LENGTH = 500  # storage.clinic.models.REASON_LENGTH


def upgrade() -> None:
    op.create_table(
        "gateway_status",
        sa.Column("gateway_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("software_version", sa.String(length=64), nullable=True),
        sa.Column("outbox_depth", sa.Integer(), nullable=True),
        sa.Column("outbox_capacity", sa.Integer(), nullable=True),
        sa.Column("outbox_full", sa.Boolean(), nullable=False),
        sa.Column("oldest_unacked_age_s", sa.Float(), nullable=True),
        sa.Column("unbound_readings", sa.Integer(), nullable=False),
        sa.Column("unbound", sa.JSON(), nullable=False),
        sa.Column("meters", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.String(length=REASON_LENGTH), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.gateway_id"],
            name="fk_gateway_status_gateway_id_gateways",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gateway_id", name="pk_gateway_status"),
    )
    op.create_table(
        "unbound_releases",
        sa.Column("command_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("clinic_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("gateway_id", sa.String(length=ID_LENGTH), nullable=False),
        sa.Column("meter_key", sa.String(length=METER_KEY_LENGTH), nullable=False),
        sa.Column("device_user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("patient_id", sa.String(length=ID_LENGTH), nullable=True),
        sa.Column("measured_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measured_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("decided_by", sa.String(length=ID_LENGTH), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("action IN ('adopt', 'discard')", name="ck_unbound_releases_action_known"),
        sa.CheckConstraint(
            "(action = 'adopt') = (patient_id IS NOT NULL)", name="ck_unbound_releases_adopt_names_patient"
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.clinic_id"],
            name="fk_unbound_releases_clinic_id_clinics",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.gateway_id"],
            name="fk_unbound_releases_gateway_id_gateways",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name="fk_unbound_releases_patient_id_patients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.user_id"],
            name="fk_unbound_releases_decided_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("command_id", name="pk_unbound_releases"),
    )
    op.create_index("ix_unbound_releases_clinic_id", "unbound_releases", ["clinic_id"])
    op.create_index(
        "ix_unbound_releases_gateway_id_applied_at", "unbound_releases", ["gateway_id", "applied_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_unbound_releases_gateway_id_applied_at", table_name="unbound_releases")
    op.drop_index("ix_unbound_releases_clinic_id", table_name="unbound_releases")
    op.drop_table("unbound_releases")
    op.drop_table("gateway_status")
