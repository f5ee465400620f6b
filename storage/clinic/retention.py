"""Retention of the clinic database's records that only grow: the audit log, the payloads ingest could
never store (`dead_letters`) and the alert webhooks never delivered (`webhook_dead_letters`).

Each kind is deleted by its time (the audit log and undelivered webhooks through that column's index;
dead letters by when they were last seen, a small table), in transactions of at most `batch` rows, so
a large first pass never holds the database's locks for long. Alerts, their events and patients' records are the
clinic's clinical record and are not touched here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from storage.clinic.models import AuditLogEntry, DeadLetter, WebhookDeadLetterRecord

PRUNE_BATCH: Final = 5_000


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows of each kind a pass deleted."""

    audit_entries: int = 0
    dead_letters: int = 0
    webhook_dead_letters: int = 0


def _delete_before(
    sessions: sessionmaker[Session],
    key: InstrumentedAttribute[int],
    at: InstrumentedAttribute[datetime],
    before: datetime,
    batch: int,
) -> int:
    deleted = 0
    while True:
        with sessions() as session, session.begin():
            ids = list(session.scalars(select(key).where(at < before).order_by(at).limit(batch)))
            if ids:
                session.execute(delete(key.class_).where(key.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted


def prune_clinic_records(
    sessions: sessionmaker[Session],
    *,
    audit_before: datetime | None,
    dead_letters_before: datetime | None,
    batch: int = PRUNE_BATCH,
) -> Pruned:
    """Delete audit entries written before `audit_before`, and dead letters last seen (webhooks: last
    tried) before `dead_letters_before`; None keeps that kind for ever."""
    audit = dead = hooks = 0
    if audit_before is not None:
        audit = _delete_before(sessions, AuditLogEntry.audit_id, AuditLogEntry.at, audit_before, batch)
    if dead_letters_before is not None:
        dead = _delete_before(
            sessions, DeadLetter.dead_letter_id, DeadLetter.last_seen_at, dead_letters_before, batch
        )
        hooks = _delete_before(
            sessions,
            WebhookDeadLetterRecord.webhook_dead_letter_id,
            WebhookDeadLetterRecord.dead_at,
            dead_letters_before,
            batch,
        )
    return Pruned(audit, dead, hooks)
