"""Migration 0008 on a clinic in use, on SQLite and PostgreSQL: resolved alerts keep who resolved them
and why, urgent alerts that closed unseen in the last week wait for sign-off, clinics on the US profile
read mg/dL, and a signer's account removed later leaves the sign-off time (ON DELETE SET NULL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from storage.clinic.database import alembic_config, create_clinic_engine, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user, enrol_patient
from storage.clinic.models import Alert, Clinic, GuidelineProfile, User, UserRole
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url
from vitals.units import GlucoseUnit

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]

NOW = datetime.now(UTC).replace(microsecond=0)


def _insert_alert(
    conn: object, alert_id: str, severity: str, state: str, resolved_days_ago: float | None, acked: bool
) -> None:
    resolved = NOW - timedelta(days=resolved_days_ago) if resolved_days_ago is not None else None
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO alerts (alert_id, patient_id, clinic_id, rule_id, severity, state, opened_at, "
            "updated_at, resolved_at, acknowledged_at, acknowledged_by, escalation_level, trigger_values) "
            "VALUES (:id, 'p1', 'c-us', 'GLU-HYPO-2', :sev, :state, :opened, :opened, :resolved, :acked, "
            ":acked_by, 0, '{}')"
        ),
        {
            "id": alert_id,
            "sev": severity,
            "state": state,
            "opened": _stored(NOW - timedelta(days=30), conn),
            "resolved": _stored(resolved, conn),
            "acked": _stored(NOW - timedelta(days=29), conn) if acked else None,
            "acked_by": "dr1" if acked else None,
        },
    )


def _stored(value: datetime | None, conn: object) -> object:
    """A time as the models store it: UTC wall time on SQLite, timestamptz on PostgreSQL."""
    if value is None:
        return None
    dialect = conn.dialect.name  # type: ignore[attr-defined]
    return value.replace(tzinfo=None) if dialect == "sqlite" else value


def _event(conn: object, alert_id: str, actor: str, event: str, details: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO alert_events (alert_id, at, actor, event, details) "
            "VALUES (:id, :at, :actor, :event, :details)"
        ),
        {"id": alert_id, "at": _stored(NOW, conn), "actor": actor, "event": event, "details": details},
    )


def test_0008_fills_existing_alerts_and_clinics_from_what_was_kept(clinic_url: str) -> None:
    """An upgrade keeps the resolver and note of old alerts, and flags last week's unseen urgent ones."""
    config = alembic_config(clinic_url)
    command.upgrade(config, "0007")
    engine = create_clinic_engine(clinic_url)
    try:
        with engine.begin() as conn:
            for clinic_id, profile in (("c-us", "us"), ("c-cn", "cn")):
                conn.execute(
                    text(
                        "INSERT INTO clinics (clinic_id, name, default_profile, timezone, created_at) "
                        "VALUES (:id, 'Clinic', :profile, 'UTC', :at)"
                    ),
                    {"id": clinic_id, "profile": profile, "at": _stored(NOW, conn)},
                )
            conn.execute(
                text(
                    "INSERT INTO users (user_id, clinic_id, email, display_name, active, failed_logins, "
                    "created_at) VALUES ('dr1', 'c-us', 'dr1@example.org', 'Dr One', :t, 0, :at)"
                ),
                {"t": True, "at": _stored(NOW, conn)},
            )
            conn.execute(
                text(
                    "INSERT INTO patients (patient_id, clinic_id, given_name, family_name, active, enrolled_at) "
                    "VALUES ('p1', 'c-us', 'A', 'B', :t, :at)"
                ),
                {"t": True, "at": _stored(NOW, conn)},
            )
            _insert_alert(conn, "by-doctor", "urgent", "resolved", 1, acked=False)
            _event(conn, "by-doctor", "dr1", "resolved", '{"note": "called, fine"}')
            _insert_alert(conn, "unseen-recent", "urgent", "resolved", 2, acked=False)
            _event(conn, "unseen-recent", "system", "auto_resolved", "{}")
            _insert_alert(conn, "unseen-old", "urgent", "resolved", 20, acked=False)
            _insert_alert(conn, "seen", "urgent", "resolved", 1, acked=True)
            _insert_alert(conn, "warning", "warning", "resolved", 1, acked=False)
            _insert_alert(conn, "open", "urgent", "open", None, acked=False)
    finally:
        engine.dispose()

    upgrade_to_head(clinic_url)
    engine = create_clinic_engine(clinic_url)
    try:
        with Session(engine) as session:
            alerts = {a.alert_id: a for a in session.query(Alert)}
            assert (alerts["by-doctor"].resolved_by, alerts["by-doctor"].resolution_note) == (
                "dr1",
                "called, fine",
            )
            assert not alerts["by-doctor"].needs_signoff
            assert {a for a, row in alerts.items() if row.needs_signoff} == {"unseen-recent"}
            assert alerts["unseen-recent"].resolved_by is None
            units = {c.clinic_id: c.glucose_unit for c in session.query(Clinic)}
            assert units == {"c-us": GlucoseUnit.MG_DL, "c-cn": GlucoseUnit.MMOL_L}
            assert session.get_one(User, "dr1").glucose_unit_override is None
    finally:
        engine.dispose()


def test_a_signers_account_removed_later_leaves_the_signoff_time(clinic_engine: Engine) -> None:
    """signed_off_by and resolved_by refer to users; removing the account keeps the alert and its time."""
    with Session(clinic_engine) as session:
        add_clinic(session, clinic_id="c1", name="Clinic", profile=GuidelineProfile.US)
        for user_id in ("dr1", "nurse1"):
            add_user(
                session,
                user_id=user_id,
                clinic_id="c1",
                email=f"{user_id}@example.org",
                display_name=user_id,
                roles=[UserRole.FAMILY_DOCTOR if user_id == "dr1" else UserRole.CLINIC_STAFF],
            )
        enrol_patient(
            session, patient_id="p1", clinic_id="c1", given_name="A", family_name="B", family_doctor_id="dr1"
        )
        session.add(
            Alert(
                alert_id="a1",
                patient_id="p1",
                clinic_id="c1",
                rule_id="GLU-HYPO-2",
                severity="urgent",
                state="resolved",
                resolved_at=NOW,
                resolved_by="nurse1",
                resolution_note="seen",
                signed_off_at=NOW,
                signed_off_by="nurse1",
            )
        )
        session.commit()
        assert session.get_one(Clinic, "c1").glucose_unit is GlucoseUnit.MG_DL  # US profile at creation
        session.delete(session.get_one(User, "nurse1"))
        session.commit()
        session.expire_all()
        alert = session.get_one(Alert, "a1")
        assert (alert.resolved_by, alert.signed_off_by, alert.signed_off_at) == (None, None, NOW)
        assert alert.resolution_note == "seen"
