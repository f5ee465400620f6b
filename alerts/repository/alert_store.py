"""Alerts, their events and the digests sent, in the clinic database; the inbox's queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.lifecycle import AlertRecord, EventRecord, InvalidTransition
from storage.clinic.models import (
    Alert,
    AlertEventRecord,
    CareTeamMember,
    DigestDelivery,
    Patient,
    User,
)
from vitals.payload import AlertSeverity

_FIELDS = (
    "alert_id",
    "clinic_id",
    "patient_id",
    "rule_id",
    "severity",
    "state",
    "opened_at",
    "updated_at",
    "resolved_at",
    "acknowledged_at",
    "acknowledged_by",
    "snoozed_until",
    "escalation_level",
    "window_start",
    "window_end",
    "resolved_by",
    "resolution_note",
    "needs_signoff",
    "signed_off_at",
    "signed_off_by",
)
# How long a resolved alert stays in the "recent" view.
RECENT_RESOLVED = timedelta(days=7)
# Most urgent first (ORDER BY): urgent, warning, info.
_SEVERITY_RANK = case(
    {AlertSeverity.URGENT: 0, AlertSeverity.WARNING: 1, AlertSeverity.INFO: 2},
    value=Alert.severity,
    else_=3,
)


class InboxView(StrEnum):
    """Which alerts an inbox lists."""

    ACTIVE = "active"  # open, acknowledged, snoozed, escalated: most severe first, then oldest
    NEEDS_SIGNOFF = "needs_signoff"  # urgent, resolved unseen: until signed off, oldest first
    RECENT = "recent"  # resolved in the last 7 days, newest first


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An alert event as the clinic database keeps it (`alert_events`), with its row id, and its
    alert as it stands now."""

    row_id: int
    event: EventRecord
    alert: AlertRecord


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An alert with its patient's names, for the care team's own screens (never for channels)."""

    record: AlertRecord
    patient_given_name: str
    patient_family_name: str


def _record(row: Alert) -> AlertRecord:
    data: dict[str, Any] = {f: getattr(row, f) for f in _FIELDS}
    return AlertRecord(**data, trigger_values=dict(row.trigger_values or {}))


def _event(row: AlertEventRecord) -> EventRecord:
    return EventRecord(
        row.alert_id,
        row.at,
        row.actor,
        row.event,
        row.from_state,
        row.to_state,
        row.severity,
        dict(row.details or {}),
    )


class SqlAlertRepository:
    """AlertRepository on SQLAlchemy sessions (SQLite or PostgreSQL). One transaction per call."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def _latest_row(self, session: Session, patient_id: str, rule_id: str) -> Alert | None:
        return session.scalars(
            select(Alert)
            .where(Alert.patient_id == patient_id, Alert.rule_id == rule_id)
            .order_by(Alert.opened_at.desc(), Alert.alert_id.desc())
            .limit(1)
        ).first()

    def current(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        latest = self.latest(patient_id, rule_id)
        return latest if latest is not None and latest.unresolved else None

    def latest(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        with self.sessions() as session:
            row = self._latest_row(session, patient_id, rule_id)
            return _record(row) if row else None

    def has_episode(self, patient_id: str, rule_id: str, episode_key: str) -> bool:
        with self.sessions() as session:
            keys = session.scalars(
                select(Alert.trigger_values).where(Alert.patient_id == patient_id, Alert.rule_id == rule_id)
            )
            return any((values or {}).get("episode_key") == episode_key for values in keys)

    def get(self, alert_id: str) -> AlertRecord | None:
        with self.sessions() as session:
            row = session.get(Alert, alert_id)
            return _record(row) if row else None

    def latest_by_rule(self, patient_id: str) -> dict[str, AlertRecord]:
        """`latest` for every rule of one patient, in one query (an evaluation's alerts)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Alert)
                .where(Alert.patient_id == patient_id)
                .order_by(Alert.rule_id, Alert.opened_at, Alert.alert_id)
            )
            return {row.rule_id: _record(row) for row in rows}  # the newest of each rule comes last

    def save(self, record: AlertRecord, event: EventRecord | None) -> None:
        with self.sessions() as session:
            row = session.get(Alert, record.alert_id)
            if row is None:
                row = Alert(alert_id=record.alert_id)
                session.add(row)
            for f in _FIELDS[1:]:
                setattr(row, f, getattr(record, f))
            row.trigger_values = dict(record.trigger_values)
            if event is not None:
                session.add(
                    AlertEventRecord(
                        alert_id=event.alert_id,
                        at=event.at,
                        actor=event.actor,
                        event=event.event,
                        from_state=event.from_state,
                        to_state=event.to_state,
                        severity=event.severity,
                        details=dict(event.details),
                    )
                )
            try:
                session.commit()
            except IntegrityError as exc:
                # uq_alerts_open_patient_rule: another evaluation opened this (patient, rule) first.
                session.rollback()
                raise InvalidTransition("an unresolved alert exists for this patient and rule") from exc

    def last_event_row(self) -> int:
        """The newest `alert_events` row id (0: none yet)."""
        with self.sessions() as session:
            return int(session.scalar(select(func.max(AlertEventRecord.alert_event_id))) or 0)

    def logged_events(
        self, *, after_row: int | None = None, rows: Sequence[int] = (), limit: int = 500
    ) -> list[LoggedEvent]:
        """Events by row id: those after `after_row` (oldest first, at most `limit`), or those of
        `rows`. Another process may have written them (alerts.event_feed)."""
        q = select(AlertEventRecord, Alert).join(Alert, Alert.alert_id == AlertEventRecord.alert_id)
        if after_row is not None:
            q = q.where(AlertEventRecord.alert_event_id > after_row)
        else:
            q = q.where(AlertEventRecord.alert_event_id.in_(list(rows)))
        q = q.order_by(AlertEventRecord.alert_event_id).limit(limit)
        with self.sessions() as session:
            return [LoggedEvent(ev.alert_event_id, _event(ev), _record(al)) for ev, al in session.execute(q)]

    def unresolved(self, clinic_id: str | None = None) -> list[AlertRecord]:
        with self.sessions() as session:
            q = select(Alert).where(Alert.state != "resolved")
            if clinic_id is not None:
                q = q.where(Alert.clinic_id == clinic_id)
            return [_record(r) for r in session.scalars(q.order_by(Alert.opened_at))]

    def needing_signoff(self, clinic_id: str | None = None) -> list[AlertRecord]:
        with self.sessions() as session:
            q = select(Alert).where(Alert.needs_signoff)
            if clinic_id is not None:
                q = q.where(Alert.clinic_id == clinic_id)
            q = q.order_by(Alert.resolved_at, Alert.alert_id)
            return [_record(r) for r in session.scalars(q)]

    def events(self, alert_id: str) -> list[EventRecord]:
        with self.sessions() as session:
            rows = session.scalars(
                select(AlertEventRecord)
                .where(AlertEventRecord.alert_id == alert_id)
                .order_by(AlertEventRecord.alert_event_id)
            )
            return [_event(r) for r in rows]

    def inbox(
        self,
        clinic_id: str,
        user_id: str,
        *,
        all_patients: bool,
        view: InboxView = InboxView.ACTIVE,
        now: datetime,
        patient_id: str | None = None,
        limit: int = 200,
        without_rules: frozenset[str] = frozenset(),
    ) -> list[InboxEntry]:
        """Alerts a user should see: their care-team patients' (all the clinic's for an administrator),
        in `view`, each alert once, with the patient's names; alerts of `without_rules` left out."""
        with self.sessions() as session:
            q = (
                select(Alert, Patient.given_name, Patient.family_name)
                .join(Patient, Patient.patient_id == Alert.patient_id)
                .where(Alert.clinic_id == clinic_id)
            )
            if view is InboxView.ACTIVE:
                q = q.where(Alert.state != "resolved").order_by(_SEVERITY_RANK, Alert.opened_at)
            elif view is InboxView.NEEDS_SIGNOFF:
                q = q.where(Alert.needs_signoff).order_by(_SEVERITY_RANK, Alert.resolved_at)
            else:
                q = q.where(Alert.state == "resolved", Alert.resolved_at >= now - RECENT_RESOLVED).order_by(
                    Alert.resolved_at.desc()
                )
            if patient_id is not None:
                q = q.where(Alert.patient_id == patient_id)
            if without_rules:
                q = q.where(Alert.rule_id.not_in(sorted(without_rules)))
            if not all_patients:
                # A subquery, not a join: a patient reached twice must not list an alert twice.
                team = select(CareTeamMember.patient_id).where(CareTeamMember.user_id == user_id)
                q = q.where(Alert.patient_id.in_(team))
            q = q.order_by(Alert.alert_id).limit(limit)
            return [InboxEntry(_record(row), given, family) for row, given, family in session.execute(q)]

    def entry(self, alert_id: str) -> InboxEntry | None:
        """One alert with its patient's names."""
        with self.sessions() as session:
            found = session.execute(
                select(Alert, Patient.given_name, Patient.family_name)
                .join(Patient, Patient.patient_id == Alert.patient_id)
                .where(Alert.alert_id == alert_id)
            ).first()
            if found is None:
                return None
            row, given, family = found
            return InboxEntry(_record(row), given, family)

    def display_names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The display names of these users (clinicians acting on alerts); unknown ids are left out."""
        wanted = {u for u in user_ids if u}
        if not wanted:
            return {}
        with self.sessions() as session:
            rows = session.execute(select(User.user_id, User.display_name).where(User.user_id.in_(wanted)))
            return {user_id: name for user_id, name in rows}

    def on_care_team(self, user_id: str, patient_id: str) -> bool:
        """Whether `user_id` is a member of `patient_id`'s care team (on duty or not)."""
        with self.sessions() as session:
            found = session.scalar(
                select(CareTeamMember.care_team_member_id).where(
                    CareTeamMember.user_id == user_id, CareTeamMember.patient_id == patient_id
                )
            )
            return found is not None

    # --- the daily digest's bookkeeping (digest_deliveries) --------------------------------------------
    def digests_sent(self, day: str) -> set[str]:
        with self.sessions() as session:
            return set(
                session.scalars(select(DigestDelivery.user_id).where(DigestDelivery.digest_day == day))
            )

    def record_digest_sent(self, day: str, user_id: str, at: datetime) -> bool:
        """Idempotent on (day, user_id): False if already recorded, by this or another process."""
        with self.sessions() as session:
            if _digest_recorded(session, day, user_id):
                return False
            session.add(DigestDelivery(digest_day=day, user_id=user_id, sent_at=at))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if _digest_recorded(session, day, user_id):
                    return False  # uq_digest_deliveries_digest_day_user_id: recorded meanwhile
                raise  # not a repeat (e.g. no such user): the caller must hear of it
        return True

    def forget_digests_before(self, day: str) -> int:
        with self.sessions() as session, session.begin():
            result = session.execute(delete(DigestDelivery).where(DigestDelivery.digest_day < day))
            return int(getattr(result, "rowcount", 0) or 0)


def _digest_recorded(session: Session, day: str, user_id: str) -> bool:
    found = session.scalars(
        select(DigestDelivery.digest_delivery_id).where(
            DigestDelivery.digest_day == day, DigestDelivery.user_id == user_id
        )
    ).first()
    return found is not None
