"""The audit trail: who did what to which record, allowed or denied (HIPAA §164.312(b), "record and
examine activity in information systems that contain or use ePHI"; reliability.md §5.1).

Entries name people and records by opaque id only (user_id, patient_id, alert_id); `details` never
holds a name, an e-mail address, a password or a token. The caller's session commits the entry, so
a change and its audit entry land in one transaction.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic.models import AuditLogEntry


class AuditOutcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | None,
    clinic_id: str | None,
    outcome: AuditOutcome = AuditOutcome.ALLOWED,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one audit entry to `session` (the caller commits)."""
    session.add(
        AuditLogEntry(
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            clinic_id=clinic_id,
            outcome=outcome.value,
            details=details or {},
        )
    )


# The most entries one query returns (the API's page cap; the CLI may ask for up to this many).
MAX_AUDIT_PAGE: Final = 1000


def find_audit_entries(
    session: Session,
    *,
    clinic_id: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    outcome: AuditOutcome | None = None,
    before_audit_id: int | None = None,
    limit: int = 100,
) -> list[AuditLogEntry]:
    """Entries matching every filter given, newest first, at most `limit` (capped at MAX_AUDIT_PAGE).

    Newest first is by `audit_id` (insertion order), so that `before_audit_id` (the last id of the
    previous page) pages on without gaps or repeats even when two entries share a time."""
    query = select(AuditLogEntry)
    if clinic_id is not None:
        query = query.where(AuditLogEntry.clinic_id == clinic_id)
    if object_type is not None:
        query = query.where(AuditLogEntry.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditLogEntry.object_id == object_id)
    if actor is not None:
        query = query.where(AuditLogEntry.actor == actor)
    if since is not None:
        query = query.where(AuditLogEntry.at >= since)
    if outcome is not None:
        query = query.where(AuditLogEntry.outcome == outcome.value)
    if before_audit_id is not None:
        query = query.where(AuditLogEntry.audit_id < before_audit_id)
    query = query.order_by(AuditLogEntry.audit_id.desc())
    return list(session.scalars(query.limit(max(1, min(limit, MAX_AUDIT_PAGE)))))


def audit_entry_json(entry: AuditLogEntry) -> dict[str, Any]:
    """One entry as plain JSON values (time in ISO 8601 UTC)."""
    return {
        "audit_id": entry.audit_id,
        "at": entry.at.astimezone(UTC).isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "clinic_id": entry.clinic_id,
        "outcome": entry.outcome,
        "details": entry.details or {},
    }
