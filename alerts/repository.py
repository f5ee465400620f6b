"""Alert persistence and patient look-ups on the clinic database (storage/clinic/models.py).

The queries alerts needs live here; the models are the clinic-database engineer's. Columns the
lifecycle needs but the models lack are kept inside `Alert.trigger_values` (JSON, numbers and ids
only): `episode_key`, `latched` (manual resolve until the condition clears), `clear_streak`,
`notified_at` (for escalation timing), `citation`, `reading_ids`, `values`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import Recipient
from alerts.channels.email import QueuedEmail
from alerts.channels.webhook import DeadLetter
from alerts.engine import PatientContext, PatientRules
from alerts.lifecycle import AlertRecord, EventRecord, InvalidTransition
from alerts.model import PatientReport, ReportKind
from alerts.profiles import PatientTargets, Profile, parameters, profile
from storage.clinic.models import (
    REASON_LENGTH,
    URL_LENGTH,
    Alert,
    AlertEventRecord,
    CareTeamMember,
    CareTeamRole,
    Clinic,
    DigestDelivery,
    EmailOutboxEntry,
    Patient,
    PatientReportRecord,
    User,
    WebhookDeadLetterRecord,
    cut_to,
)
from storage.clinic.models import PatientTargets as TargetsRow
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
# Patients per query of `SqlPatientDirectory.rules` (bound parameters stay far under SQLite's limit).
RULES_CHUNK = 1000
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


def chosen_profile(row: TargetsRow | None, clinic: Clinic | None, default: Profile) -> Profile:
    """The patient's guideline profile: the doctor's choice, else the clinic's, else `default`."""
    if row is not None and row.guideline_profile is not None:
        return profile(row.guideline_profile.value)
    if clinic is not None:
        return profile(clinic.default_profile.value)
    return default


def patient_targets(row: TargetsRow | None, clinic: Clinic | None) -> PatientTargets:
    """The rules' view of a patient's targets row (NULL: the profile's value). Titration and insulin
    both shorten DQ-01's stale-data limit ([58] DEFAULT); the patient's time zone, else the clinic's."""
    clinic_zone = clinic.timezone if clinic is not None else None
    if row is None:
        return PatientTargets(timezone=clinic_zone)
    return PatientTargets(
        goal_systolic_mmhg=row.bp_goal_systolic_mmhg,
        goal_diastolic_mmhg=row.bp_goal_diastolic_mmhg,
        fasting_limit_mg_dl=row.glucose_fasting_high_mg_dl,
        postprandial_limit_mg_dl=row.glucose_postprandial_high_mg_dl,
        hypo1_mg_dl=row.glucose_hypo_mg_dl,
        older_or_high_risk=bool(row.older_adult),
        titration=bool(row.bp_titration or row.on_insulin),
        timezone=row.timezone or clinic_zone,
    )


class SqlPatientDirectory:
    """Patient context for the engine: clinic, guideline profile, the doctor's targets, the care team."""

    def __init__(self, sessions: sessionmaker[Session], default_profile: str = "eu") -> None:
        self.sessions = sessions
        self.default_profile = profile(default_profile)

    def context(self, patient_id: str) -> PatientContext | None:
        with self.sessions() as session:
            patient = session.get(Patient, patient_id)
            if patient is None or not patient.active:
                return None
            clinic = session.get(Clinic, patient.clinic_id)
            row: TargetsRow | None = patient.targets
            chosen = chosen_profile(row, clinic, self.default_profile)
            targets = patient_targets(row, clinic)
            return PatientContext(patient_id, patient.clinic_id, chosen, targets, _team(patient.care_team))

    def active_patient_ids(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(select(Patient.patient_id).where(Patient.active).order_by(Patient.patient_id))
            )

    def rules(self, patient_ids: Sequence[str]) -> dict[str, PatientRules]:
        """Clinic and rule parameters of the active patients among `patient_ids`: one query per
        RULES_CHUNK patients (the sweep's look-up; `context` adds the care team, per patient)."""
        found: dict[str, PatientRules] = {}
        ids = list(dict.fromkeys(patient_ids))
        with self.sessions() as session:
            for i in range(0, len(ids), RULES_CHUNK):
                rows = session.execute(
                    select(Patient.patient_id, Patient.clinic_id, TargetsRow, Clinic)
                    .join(Clinic, Clinic.clinic_id == Patient.clinic_id)
                    .outerjoin(TargetsRow, TargetsRow.patient_id == Patient.patient_id)
                    .where(Patient.patient_id.in_(ids[i : i + RULES_CHUNK]), Patient.active)
                )
                for pid, clinic_id, row, clinic in rows:
                    chosen = chosen_profile(row, clinic, self.default_profile)
                    found[pid] = PatientRules(
                        pid, clinic_id, parameters(chosen, patient_targets(row, clinic))
                    )
        return found


def _team(members: Sequence[CareTeamMember]) -> tuple[Recipient, ...]:
    """Family doctor first, then staff on duty by escalation order; inactive accounts are skipped."""
    chosen = [
        m for m in members if (m.team_role is CareTeamRole.FAMILY_DOCTOR or m.on_duty) and _active(m.user)
    ]
    chosen.sort(key=lambda m: (m.team_role is not CareTeamRole.FAMILY_DOCTOR, m.escalation_order))
    return tuple(Recipient(m.user_id, m.team_role.value, m.user.email) for m in chosen)


def _active(user: User | None) -> bool:
    return user is not None and user.active


class SqlReportStore:
    """Patient reports in the clinic database (`patient_reports`), so symptoms, assisted hypos and
    ketones recorded by the care team survive a restart. Idempotent on `report_id`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, report: PatientReport) -> bool:
        """False if this report was already stored."""
        with self._sessions() as session:
            if session.get(PatientReportRecord, report.report_id) is not None:
                return False
            session.add(
                PatientReportRecord(
                    report_id=report.report_id,
                    patient_id=report.patient_id,
                    kind=report.kind.value,
                    reported_at=report.reported_at,
                    symptoms=sorted(report.symptoms),
                    ketones_mmol_l=report.ketones_mmol_l,
                    seated_systolic_mmhg=report.seated_systolic_mmhg,
                    standing_systolic_mmhg=report.standing_systolic_mmhg,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # stored meanwhile by another request: the same report
                session.rollback()
                return False
        return True

    def for_patient(self, patient_id: str, start: datetime, end: datetime) -> list[PatientReport]:
        with self._sessions() as session:
            rows = session.scalars(
                select(PatientReportRecord)
                .where(
                    PatientReportRecord.patient_id == patient_id,
                    PatientReportRecord.reported_at >= start,
                    PatientReportRecord.reported_at <= end,
                )
                .order_by(PatientReportRecord.reported_at)
            )
            return [
                PatientReport(
                    patient_id=row.patient_id,
                    report_id=row.report_id,
                    reported_at=row.reported_at,
                    kind=ReportKind(row.kind),
                    symptoms=frozenset(row.symptoms),
                    ketones_mmol_l=row.ketones_mmol_l,
                    seated_systolic_mmhg=row.seated_systolic_mmhg,
                    standing_systolic_mmhg=row.standing_systolic_mmhg,
                )
                for row in rows
            ]


class SqlEmailOutbox:
    """`alerts.channels.email.EmailOutbox` on the clinic database's `email_outbox` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(
        self, event_id: str, message: bytes, error: str, *, attempts: int, next_attempt_at: datetime
    ) -> bool:
        row = EmailOutboxEntry(
            event_id=event_id,
            message=message,
            attempts=attempts,
            last_error=error[:REASON_LENGTH],
            next_attempt_at=next_attempt_at,
        )
        try:
            with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False  # this event's e-mail is already kept
        return True

    def due(self, now: datetime, limit: int) -> list[QueuedEmail]:
        with self._sessions() as session:
            rows = session.scalars(
                select(EmailOutboxEntry)
                .where(
                    EmailOutboxEntry.sent_at.is_(None),
                    EmailOutboxEntry.given_up_at.is_(None),
                    EmailOutboxEntry.next_attempt_at <= now,
                )
                .order_by(EmailOutboxEntry.next_attempt_at)
                .limit(limit)
            )
            return [QueuedEmail(r.outbox_id, r.event_id, r.message, r.created_at, r.attempts) for r in rows]

    def sent(self, outbox_id: int, at: datetime) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(EmailOutboxEntry, outbox_id)
            if row is not None:
                row.sent_at = at
                row.attempts += 1

    def failed(self, outbox_id: int, error: str, *, next_attempt_at: datetime | None, at: datetime) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(EmailOutboxEntry, outbox_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = error[:REASON_LENGTH]
            if next_attempt_at is None:
                row.given_up_at = at
            else:
                row.next_attempt_at = next_attempt_at


@dataclass(frozen=True, slots=True)
class KeptWebhook:
    """An undelivered webhook as kept in `webhook_dead_letters`, with the row id an operator names."""

    letter_id: int
    letter: DeadLetter


class SqlWebhookDeadLetters:
    """`alerts.channels.webhook.DeadLetterSink` on the clinic database's `webhook_dead_letters` table.

    One row per undelivered webhook, committed in its own transaction, so that every clinic host and
    the database's backups see it. `recent` is what an operator (or a re-send tool) reads.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, letter: DeadLetter) -> None:
        with self._sessions() as session, session.begin():
            session.add(self._row(letter))

    def add_missing(self, letters: Sequence[DeadLetter]) -> int:
        """Keep the letters not kept yet (same event, receiver, time and body), in one transaction:
        importing the same file twice keeps each letter once. How many were added."""
        added = 0
        with self._sessions() as session, session.begin():
            for letter in letters:
                url = cut_to(letter.url, URL_LENGTH)
                present = session.scalar(
                    select(WebhookDeadLetterRecord.webhook_dead_letter_id).where(
                        WebhookDeadLetterRecord.event_id == letter.event_id,
                        WebhookDeadLetterRecord.url == url,
                        WebhookDeadLetterRecord.dead_at == letter.at,
                        WebhookDeadLetterRecord.body == letter.body,
                    )
                )
                if present is None:
                    session.add(self._row(letter))
                    session.flush()
                    added += 1
        return added

    @staticmethod
    def _row(letter: DeadLetter) -> WebhookDeadLetterRecord:
        return WebhookDeadLetterRecord(
            event_id=letter.event_id,
            url=cut_to(letter.url, URL_LENGTH),
            body=letter.body,
            attempts=letter.attempts,
            last_error=cut_to(letter.last_error, REASON_LENGTH),
            dead_at=letter.at,
        )

    def recent(self, limit: int = 50) -> list[DeadLetter]:
        """The newest `limit` undelivered webhooks, newest first."""
        return [kept.letter for kept in self.kept(limit=limit)]

    def kept(self, *, limit: int | None = 50, letter_ids: Sequence[int] | None = None) -> list[KeptWebhook]:
        """Undelivered webhooks with their row ids, newest first: the newest `limit`, or those of
        `letter_ids` (ids no longer kept are left out)."""
        query = select(WebhookDeadLetterRecord).order_by(
            WebhookDeadLetterRecord.dead_at.desc(), WebhookDeadLetterRecord.webhook_dead_letter_id.desc()
        )
        if letter_ids is not None:
            query = query.where(WebhookDeadLetterRecord.webhook_dead_letter_id.in_(list(letter_ids)))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [
                KeptWebhook(
                    r.webhook_dead_letter_id,
                    DeadLetter(r.url, r.event_id, r.body, r.attempts, r.last_error, r.dead_at),
                )
                for r in session.scalars(query)
            ]

    def delivered(self, letter_id: int) -> None:
        """A re-send reached its receiver: the letter is no longer kept."""
        self.drop([letter_id])

    def failed_again(self, letter_id: int, attempts: int, error: str, at: datetime) -> None:
        """A re-send failed too: count its attempts and keep its error and time."""
        with self._sessions() as session, session.begin():
            row = session.get(WebhookDeadLetterRecord, letter_id)
            if row is not None:
                row.attempts += attempts
                row.last_error = cut_to(error, REASON_LENGTH)
                row.dead_at = at

    def drop(self, letter_ids: Sequence[int]) -> int:
        """Stop keeping these letters (an operator gave up on them); how many were kept."""
        with self._sessions() as session, session.begin():
            rows = session.scalars(
                select(WebhookDeadLetterRecord).where(
                    WebhookDeadLetterRecord.webhook_dead_letter_id.in_(list(letter_ids))
                )
            ).all()
            for row in rows:
                session.delete(row)
            return len(rows)
