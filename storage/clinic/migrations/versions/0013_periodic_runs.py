"""Coordination between the clinic's processes (storage.clinic.coordination): the latest turn of
each periodic job (`periodic_runs`), and, on PostgreSQL, a notification on channel
`vitalgate_alert_events` carrying each new alert event's id, so every API replica's live stream
carries every alert event whichever replica made it. And an index of each patient's alerts by rule:
every evaluation reads the patient's latest alert per rule, resolved ones included, which the
partial unique index of open alerts cannot answer.

A new table, a trigger and an index only: existing rows are untouched.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "vitalgate_alert_events"  # storage.clinic.coordination.ALERT_EVENTS_CHANNEL


def upgrade() -> None:
    op.create_table(
        "periodic_runs",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=128), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_periodic_runs")),
    )
    op.create_index(
        "ix_alerts_patient_id_rule_id_opened_at", "alerts", ["patient_id", "rule_id", "opened_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        # pg_notify is transactional: listeners hear of the event when its transaction commits.
        op.execute(
            f"""
            CREATE FUNCTION vitalgate_notify_alert_event() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('{CHANNEL}', NEW.alert_event_id::text);
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER alert_events_notify AFTER INSERT ON alert_events "
            "FOR EACH ROW EXECUTE FUNCTION vitalgate_notify_alert_event()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS alert_events_notify ON alert_events")
        op.execute("DROP FUNCTION IF EXISTS vitalgate_notify_alert_event()")
    op.drop_index("ix_alerts_patient_id_rule_id_opened_at", table_name="alerts")
    op.drop_table("periodic_runs")
