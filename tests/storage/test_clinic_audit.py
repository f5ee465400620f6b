"""The audit trail's writes and queries (storage.clinic.audit), on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from storage.clinic.audit import (
    MAX_AUDIT_PAGE,
    AuditOutcome,
    audit_entry_json,
    find_audit_entries,
    record_audit,
)
from storage.clinic.models import AuditLogEntry
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]


def _write(session: Session, actor: str, object_id: str, clinic_id: str, outcome: AuditOutcome) -> None:
    record_audit(
        session,
        actor=actor,
        action="read_readings",
        object_type="patient",
        object_id=object_id,
        clinic_id=clinic_id,
        outcome=outcome,
        details={"count": 1} if outcome is AuditOutcome.ALLOWED else None,
    )


def test_entries_are_found_by_every_filter_newest_first(clinic_engine: Engine) -> None:
    with Session(clinic_engine) as session:
        _write(session, "dr-a", "p-1", "c1", AuditOutcome.ALLOWED)
        _write(session, "dr-b", "p-1", "c1", AuditOutcome.DENIED)
        _write(session, "admin-2", "p-1", "c2", AuditOutcome.DENIED)
        _write(session, "dr-a", "p-2", "c1", AuditOutcome.ALLOWED)
        session.commit()
        # An old entry, for `since`.
        session.execute(
            update(AuditLogEntry)
            .where(AuditLogEntry.actor == "dr-a", AuditLogEntry.object_id == "p-2")
            .values(at=datetime.now(UTC) - timedelta(days=400))
        )
        session.commit()

        def who(**filters: Any) -> list[tuple[str, str | None]]:
            return [(e.actor, e.object_id) for e in find_audit_entries(session, **filters)]

        assert who() == [("dr-a", "p-2"), ("admin-2", "p-1"), ("dr-b", "p-1"), ("dr-a", "p-1")]
        assert who(clinic_id="c1", object_type="patient", object_id="p-1") == [
            ("dr-b", "p-1"),
            ("dr-a", "p-1"),
        ]
        assert who(outcome=AuditOutcome.DENIED, clinic_id="c2") == [("admin-2", "p-1")]
        assert who(actor="dr-a", since=datetime.now(UTC) - timedelta(days=1)) == [("dr-a", "p-1")]
        newest = find_audit_entries(session, limit=2)
        assert who(before_audit_id=newest[-1].audit_id) == [("dr-b", "p-1"), ("dr-a", "p-1")]
        assert len(find_audit_entries(session, limit=MAX_AUDIT_PAGE * 10)) == 4

        as_json = audit_entry_json(find_audit_entries(session, actor="dr-a", object_id="p-1")[0])
        assert as_json["details"] == {"count": 1}
        assert as_json["outcome"] == "allowed"
        assert datetime.fromisoformat(as_json["at"]).utcoffset() == timedelta(0)
