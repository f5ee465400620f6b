"""Alerts keep who resolved them and why, and whether an urgent alert that resolved before any
clinician acknowledged it still waits for a clinician's sign-off (and who signed it off, when);
clinics keep the glucose unit their staff read, and a user may override it.

Existing rows: a resolved alert gets its resolver and note from its last "resolved" event (the
events stay the history); an urgent alert resolved by the engine in the last RECENT_DAYS without an
acknowledgement is marked as needing sign-off, as the alert engine marks such alerts from now on;
clinics on the US profile read mg/dL, every other clinic mmol/L.

Plain ADD COLUMN / DROP COLUMN, never Alembic's batch mode: on SQLite that rebuilds a table by
dropping it, and with foreign keys on, dropping `users` or `alerts` first runs every ON DELETE rule
pointing at it (see 0007). SQLite adds a column with a REFERENCES clause in place when its default
is NULL (sqlite.org/lang_altertable.html), and drops it in place (SQLite >= 3.35).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_LENGTH = 64  # storage.clinic.models.OPAQUE_ID_LENGTH
NOTE_LENGTH = 1000  # storage.clinic.models.RESOLUTION_NOTE_LENGTH
RECENT_DAYS = 7  # the alert API's "recent" view: resolved alerts of the last 7 days
_USER_REFERENCES = (
    ("resolved_by", "fk_alerts_resolved_by_users"),
    ("signed_off_by", "fk_alerts_signed_off_by_users"),
)


def _add_user_reference(column: str, constraint: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE alerts ADD COLUMN {column} VARCHAR({ID_LENGTH}) "
            f"CONSTRAINT {constraint} REFERENCES users (user_id) ON DELETE SET NULL"
        )
        return
    op.add_column("alerts", sa.Column(column, sa.String(length=ID_LENGTH), nullable=True))
    op.create_foreign_key(constraint, "alerts", "users", [column], ["user_id"], ondelete="SET NULL")


def upgrade() -> None:
    op.add_column(
        "clinics", sa.Column("glucose_unit", sa.String(length=8), server_default="mmol/L", nullable=False)
    )
    op.add_column("users", sa.Column("glucose_unit_override", sa.String(length=8), nullable=True))
    for column, constraint in _USER_REFERENCES:
        _add_user_reference(column, constraint)
    op.add_column("alerts", sa.Column("resolution_note", sa.String(length=NOTE_LENGTH), nullable=True))
    op.add_column(
        "alerts", sa.Column("needs_signoff", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.add_column("alerts", sa.Column("signed_off_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_alerts_resolved_at", "alerts", ["resolved_at"])
    op.create_index(
        "ix_alerts_needs_signoff_clinic_id",
        "alerts",
        ["clinic_id"],
        sqlite_where=sa.text("needs_signoff"),
        postgresql_where=sa.text("needs_signoff"),
    )
    _fill_existing_rows()


def _fill_existing_rows() -> None:
    bind = op.get_bind()
    clinics = sa.table("clinics", sa.column("glucose_unit"), sa.column("default_profile"))
    bind.execute(clinics.update().where(clinics.c.default_profile == "us").values(glucose_unit="mg/dL"))

    users = sa.table("users", sa.column("user_id"))
    people = set(bind.scalars(sa.select(users.c.user_id)))
    events = sa.table(
        "alert_events",
        sa.column("alert_event_id"),
        sa.column("alert_id"),
        sa.column("actor"),
        sa.column("event"),
        sa.column("details", sa.JSON()),
    )
    alerts = sa.table(
        "alerts",
        sa.column("alert_id"),
        sa.column("state"),
        sa.column("severity"),
        sa.column("acknowledged_at"),
        sa.column("resolved_at", sa.DateTime(timezone=True)),
        sa.column("resolved_by"),
        sa.column("resolution_note"),
        sa.column("needs_signoff"),
    )
    last_resolve: dict[str, tuple[str, dict[str, Any]]] = {}
    for alert_id, actor, details in bind.execute(
        sa.select(events.c.alert_id, events.c.actor, events.c.details)
        .where(events.c.event == "resolved")
        .order_by(events.c.alert_event_id)
    ):
        last_resolve[alert_id] = (actor, details if isinstance(details, dict) else {})
    for alert_id, (actor, details) in last_resolve.items():
        note = details.get("note")
        bind.execute(
            alerts.update()
            .where(alerts.c.alert_id == alert_id, alerts.c.state == "resolved")
            .values(
                resolved_by=actor if actor in people else None,
                resolution_note=str(note)[:NOTE_LENGTH] if note else None,
            )
        )
    since = datetime.now(UTC) - timedelta(days=RECENT_DAYS)
    if bind.dialect.name == "sqlite":  # UTC wall time without an offset (models.UTCDateTime)
        since = since.replace(tzinfo=None)
    bind.execute(
        alerts.update()
        .where(
            alerts.c.state == "resolved",
            alerts.c.severity == "urgent",
            alerts.c.acknowledged_at.is_(None),
            alerts.c.resolved_by.is_(None),
            alerts.c.resolved_at >= since,
        )
        .values(needs_signoff=True)
    )


def downgrade() -> None:
    # Who resolved and signed off, and the notes, stay in alert_events.
    op.drop_index("ix_alerts_needs_signoff_clinic_id", table_name="alerts")
    op.drop_index("ix_alerts_resolved_at", table_name="alerts")
    for column in ("signed_off_at", "needs_signoff", "resolution_note", "signed_off_by", "resolved_by"):
        op.execute(f"ALTER TABLE alerts DROP COLUMN {column}")
    op.execute("ALTER TABLE users DROP COLUMN glucose_unit_override")
    op.execute("ALTER TABLE clinics DROP COLUMN glucose_unit")
