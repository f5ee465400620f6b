"""Stored panel figures (`patient_summaries`): which are stale, when the next expires, and writing
them. Nothing here computes a clinical figure: alerts.summary_updater writes them (alerts.summaries
computes them); the panel query (storage.clinic.panel) reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Select, Table, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.clinic.models import Patient, PatientSummaryRow
from storage.clinic.models import PatientTargets as TargetsRow

SUMMARY_COLUMNS: Final = tuple(
    c.key for c in PatientSummaryRow.__table__.columns if c.key not in ("patient_id",)
)


def as_utc(value: datetime | str | None) -> datetime | None:
    """An aggregate's time as an aware UTC datetime, whatever form the engine hands it back in (SQLite
    keeps UTC wall time without an offset, models.UTCDateTime)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stale_summaries(
    session: Session, patient_ids: Select[str] | Sequence[str], *, now: datetime, version: int
) -> list[str]:
    """Patients among `patient_ids` whose stored figures are missing or no longer current: expired
    (`valid_until` passed), from another summary version, or older than the patient's targets."""
    s = PatientSummaryRow.__table__.c
    ids = patient_ids if isinstance(patient_ids, Select) else list(patient_ids)
    statement = (
        select(Patient.patient_id)
        .outerjoin(PatientSummaryRow, s.patient_id == Patient.patient_id)
        .outerjoin(TargetsRow, TargetsRow.patient_id == Patient.patient_id)
        .where(
            Patient.patient_id.in_(ids.scalar_subquery() if isinstance(ids, Select) else ids),
            or_(
                s.patient_id.is_(None),
                s.valid_until <= now,
                s.summary_version != version,
                and_(TargetsRow.updated_at.is_not(None), TargetsRow.updated_at > s.computed_at),
            ),
        )
        .order_by(Patient.patient_id)
    )
    return list(session.scalars(statement))


def earliest_expiry(session: Session) -> datetime | None:
    """The earliest `valid_until` of the active patients' stored figures."""
    s = PatientSummaryRow.__table__.c
    value = session.scalar(
        select(func.min(s.valid_until))
        .join(Patient, Patient.patient_id == s.patient_id)
        .where(Patient.active.is_(True))
    )
    return as_utc(value)


def active_patient_ids(session: Session) -> Select[str]:
    return select(Patient.patient_id).where(Patient.active.is_(True))


def upsert_summaries(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or replace the stored figures of each patient in `rows` (each has every column). The
    caller commits."""
    if not rows:
        return
    table = PatientSummaryRow.__table__
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values([dict(r) for r in rows])
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.patient_id],
        set_={name: statement.excluded[name] for name in SUMMARY_COLUMNS},
    )
    session.execute(statement)


__all__ = [
    "SUMMARY_COLUMNS",
    "active_patient_ids",
    "earliest_expiry",
    "stale_summaries",
    "upsert_summaries",
]
