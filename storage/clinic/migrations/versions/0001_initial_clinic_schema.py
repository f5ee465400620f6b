"""Initial clinic schema: clinics, users and roles, patients, care teams, gateways, meters and
bindings, per-patient targets, alerts and their events, audit log, dead letters.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("audit_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("clinic_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_object", ["object_type", "object_id"], unique=False)

    op.create_table(
        "clinics",
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "default_profile",
            sa.Enum("cn", "us", "eu", name="guidelineprofile", native_enum=False, length=8),
            nullable=False,
        ),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_clinics")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("message", "reading", name="deadletterscope", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=True),
        sa.Column("reading_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_dead_letters_dedup_key")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_index("ix_dead_letters_received_at", ["received_at"], unique=False)

    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("mqtt_username", sa.String(length=64), nullable=False),
        sa.Column("mqtt_credential_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.clinic_id"],
            name=op.f("fk_gateways_clinic_id_clinics"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("mqtt_username", name=op.f("uq_gateways_mqtt_username")),
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateways_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "meters",
        sa.Column("meter_key", sa.String(length=200), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("blood_pressure", "glucose", name="meterkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("manufacturer", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.clinic_id"],
            name=op.f("fk_meters_clinic_id_clinics"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("meter_key", name=op.f("pk_meters")),
    )
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meters_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "patients",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("family_name", sa.String(length=100), nullable=False),
        sa.Column("date_of_birth", sa.String(length=10), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.clinic_id"],
            name=op.f("fk_patients_clinic_id_clinics"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patients")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patients_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.clinic_id"], name=op.f("fk_users_clinic_id_clinics"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column(
            "severity",
            sa.Enum("info", "warning", "urgent", name="alertseverity", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "acknowledged",
                "snoozed",
                "resolved",
                "escalated",
                name="alertstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trigger_values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["users.user_id"],
            name=op.f("fk_alerts_acknowledged_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.clinic_id"],
            name=op.f("fk_alerts_clinic_id_clinics"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_alerts_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index("ix_alerts_state_opened_at", ["state", "opened_at"], unique=False)
        batch_op.create_index(
            "uq_alerts_open_patient_rule",
            ["patient_id", "rule_id"],
            unique=True,
            sqlite_where=sa.text("state <> 'resolved'"),
            postgresql_where=sa.text("state <> 'resolved'"),
        )

    op.create_table(
        "care_team_members",
        sa.Column("care_team_member_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column(
            "team_role",
            sa.Enum("family_doctor", "clinic_staff", name="careteamrole", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("escalation_order", sa.Integer(), nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_care_team_members_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_care_team_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("care_team_member_id", name=op.f("pk_care_team_members")),
        sa.UniqueConstraint("patient_id", "user_id", name=op.f("uq_care_team_members_patient_id_user_id")),
    )
    with op.batch_alter_table("care_team_members", schema=None) as batch_op:
        batch_op.create_index("ix_care_team_members_user_id", ["user_id"], unique=False)

    op.create_table(
        "meter_bindings",
        sa.Column("binding_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("meter_key", sa.String(length=200), nullable=False),
        sa.Column("device_user_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bound_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "device_user_id >= 0 AND device_user_id <= 255",
            name=op.f("ck_meter_bindings_device_user_id_range"),
        ),
        sa.ForeignKeyConstraint(
            ["bound_by"],
            ["users.user_id"],
            name=op.f("fk_meter_bindings_bound_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.gateway_id"],
            name=op.f("fk_meter_bindings_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["meter_key"],
            ["meters.meter_key"],
            name=op.f("fk_meter_bindings_meter_key_meters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_meter_bindings_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("binding_id", name=op.f("pk_meter_bindings")),
    )
    with op.batch_alter_table("meter_bindings", schema=None) as batch_op:
        batch_op.create_index("ix_meter_bindings_patient_id", ["patient_id"], unique=False)
        batch_op.create_index(
            "uq_meter_bindings_active_slot",
            ["gateway_id", "meter_key", "device_user_id"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )

    op.create_table(
        "patient_targets",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column(
            "guideline_profile",
            sa.Enum("cn", "us", "eu", name="guidelineprofile", native_enum=False, length=8),
            nullable=True,
        ),
        sa.Column("bp_goal_systolic_mmhg", sa.Float(), nullable=True),
        sa.Column("bp_goal_diastolic_mmhg", sa.Float(), nullable=True),
        sa.Column("glucose_fasting_low_mg_dl", sa.Float(), nullable=True),
        sa.Column("glucose_fasting_high_mg_dl", sa.Float(), nullable=True),
        sa.Column("glucose_postprandial_high_mg_dl", sa.Float(), nullable=True),
        sa.Column("glucose_hypo_mg_dl", sa.Float(), nullable=True),
        sa.Column("older_adult", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "bp_goal_diastolic_mmhg IS NULL OR bp_goal_systolic_mmhg IS NULL "
            "OR bp_goal_diastolic_mmhg < bp_goal_systolic_mmhg",
            name=op.f("ck_patient_targets_bp_goal_order"),
        ),
        sa.CheckConstraint(
            "glucose_fasting_low_mg_dl IS NULL OR glucose_fasting_high_mg_dl IS NULL "
            "OR glucose_fasting_low_mg_dl < glucose_fasting_high_mg_dl",
            name=op.f("ck_patient_targets_glucose_fasting_order"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.patient_id"],
            name=op.f("fk_patient_targets_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["users.user_id"],
            name=op.f("fk_patient_targets_updated_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient_targets")),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "family_doctor", "clinic_staff", "clinic_admin", name="userrole", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_user_roles")),
    )
    op.create_table(
        "alert_events",
        sa.Column("alert_event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column(
            "from_state",
            sa.Enum(
                "open",
                "acknowledged",
                "snoozed",
                "resolved",
                "escalated",
                name="alertstate",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_state",
            sa.Enum(
                "open",
                "acknowledged",
                "snoozed",
                "resolved",
                "escalated",
                name="alertstate",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column(
            "severity",
            sa.Enum("info", "warning", "urgent", name="alertseverity", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.alert_id"],
            name=op.f("fk_alert_events_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_event_id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index("ix_alert_events_alert_id_at", ["alert_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_alert_id_at")

    op.drop_table("alert_events")
    op.drop_table("user_roles")
    op.drop_table("patient_targets")
    with op.batch_alter_table("meter_bindings", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_meter_bindings_active_slot",
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
        batch_op.drop_index("ix_meter_bindings_patient_id")

    op.drop_table("meter_bindings")
    with op.batch_alter_table("care_team_members", schema=None) as batch_op:
        batch_op.drop_index("ix_care_team_members_user_id")

    op.drop_table("care_team_members")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alerts_open_patient_rule",
            sqlite_where=sa.text("state <> 'resolved'"),
            postgresql_where=sa.text("state <> 'resolved'"),
        )
        batch_op.drop_index("ix_alerts_state_opened_at")
        batch_op.drop_index(batch_op.f("ix_alerts_clinic_id"))

    op.drop_table("alerts")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_clinic_id"))

    op.drop_table("users")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_clinic_id"))

    op.drop_table("patients")
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meters_clinic_id"))

    op.drop_table("meters")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gateways_clinic_id"))

    op.drop_table("gateways")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letters_received_at")
        batch_op.drop_index(batch_op.f("ix_dead_letters_gateway_id"))

    op.drop_table("dead_letters")
    op.drop_table("clinics")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_object")
        batch_op.drop_index("ix_audit_log_at")

    op.drop_table("audit_log")
