"""What a visit report holds, gathered from the clinic database and the reading store.

The clinical figures are the summary module's (`alerts.summaries.summarize`, the same call as the
patient page's summary), over the report's period: by default the last 14 local days for glucose
(the consensus period for time in ranges and the AGP, clinical-rules.md §2.4, §2.7), and for blood
pressure the ESH home-BP week ending on the period's last day (§1.3). Besides them the report shows:

- the valid glucose readings by time of day, for the modal-day plot drawn when the data do not
  suffice for an AGP (no figure is computed from them);
- the patient's active alerts, and every alert opened or resolved in the period, with each step
  taken (who, when, note);
- the targets the rules use (`api.routes.targets.rules_use`, as the patient page shows them) and who
  last changed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from alerts.summaries import PatientSummary, query_window, summarize
from alerts.summary_updater import patient_settings
from api.routes.targets import RulesUse, rules_use
from storage.clinic.models import Alert, Clinic, Patient, User
from storage.readings.protocol import ReadingColumns, ReadingStore
from vitals.payload import AlertSeverity, AlertState
from vitals.readings import ReadingKind
from vitals.units import GlucoseUnit


@dataclass(frozen=True, slots=True)
class AlertStep:
    at: datetime
    event: str
    actor: str | None  # display name; None: the system
    note: str | None


@dataclass(frozen=True, slots=True)
class ReportAlert:
    alert_id: str
    rule_id: str
    severity: AlertSeverity
    state: AlertState
    opened_at: datetime
    resolved_at: datetime | None
    steps: tuple[AlertStep, ...]


@dataclass(frozen=True, slots=True)
class ModalDayPoint:
    """One valid glucose reading placed on the 24-hour clock of the patient's zone."""

    hour: float
    glucose_mg_dl: float


@dataclass(frozen=True, slots=True)
class VisitReport:
    clinic_name: str
    patient_id: str
    given_name: str
    family_name: str
    date_of_birth: str | None
    generated_at: datetime
    generated_by: str
    glucose_unit: GlucoseUnit
    summary: PatientSummary
    targets: RulesUse
    targets_set_by: str | None
    targets_set_at: datetime | None
    alerts: tuple[ReportAlert, ...]
    modal_day: tuple[ModalDayPoint, ...]

    @property
    def first_day(self) -> date:
        return self.summary.period.start.astimezone(self.zone).date()

    @property
    def last_day(self) -> date:
        return self.summary.period.end.astimezone(self.zone).date()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.summary.period.timezone)


@dataclass(frozen=True, slots=True)
class _Facts:
    clinic_name: str
    given_name: str
    family_name: str
    date_of_birth: str | None
    generated_by: str
    glucose_unit: GlucoseUnit
    targets: RulesUse
    targets_set_by: str | None
    targets_set_at: datetime | None


def report_glucose_unit(session: Session, user_id: str, clinic: Clinic) -> GlucoseUnit:
    """The unit the reader reads glucose in: their own override, else the clinic's."""
    user = session.get(User, user_id)
    override = user.glucose_unit_override if user is not None else None
    return override or clinic.glucose_unit


def _facts(session: Session, patient_id: str, user_id: str, unit: GlucoseUnit | None) -> _Facts:
    patient = session.get(Patient, patient_id)
    assert patient is not None  # the access check found it in the caller's clinic
    clinic = session.get(Clinic, patient.clinic_id)
    assert clinic is not None
    reader = session.get(User, user_id)
    row = patient.targets
    set_by = session.get(User, row.updated_by) if row is not None and row.updated_by else None
    return _Facts(
        clinic_name=clinic.name,
        given_name=patient.given_name,
        family_name=patient.family_name,
        date_of_birth=patient.date_of_birth,
        generated_by=reader.display_name if reader is not None else user_id,
        glucose_unit=unit or report_glucose_unit(session, user_id, clinic),
        targets=rules_use(row, clinic),
        targets_set_by=set_by.display_name if set_by is not None else None,
        targets_set_at=row.updated_at if row is not None and row.updated_by else None,
    )


def _alerts(session: Session, patient_id: str, start: datetime, end: datetime) -> tuple[ReportAlert, ...]:
    rows = (
        session.execute(
            select(Alert)
            .where(
                Alert.patient_id == patient_id,
                or_(
                    Alert.state != AlertState.RESOLVED,
                    Alert.opened_at.between(start, end),
                    Alert.resolved_at.between(start, end),
                ),
            )
            .options(selectinload(Alert.events))
            .order_by(Alert.opened_at.desc())
        )
        .scalars()
        .all()
    )
    actor_ids = {e.actor for a in rows for e in a.events}
    names: dict[str, str] = {
        user_id: name
        for user_id, name in session.execute(
            select(User.user_id, User.display_name).where(User.user_id.in_(actor_ids))
        ).all()
    }
    out = []
    for a in rows:
        steps = tuple(
            AlertStep(
                at=e.at,
                event=e.event,
                actor=names.get(e.actor),
                note=str(e.details["note"])
                if isinstance(e.details, dict) and e.details.get("note")
                else None,
            )
            for e in sorted(a.events, key=lambda e: (e.at, e.alert_event_id))
        )
        out.append(ReportAlert(a.alert_id, a.rule_id, a.severity, a.state, a.opened_at, a.resolved_at, steps))
    return tuple(out)


def _modal_day(summary: PatientSummary, glucose: ReadingColumns) -> tuple[ModalDayPoint, ...]:
    zone = ZoneInfo(summary.period.timezone)
    start_us = summary.period.start.timestamp() * 1e6
    end_us = summary.period.end.timestamp() * 1e6
    points = []
    for at_us, included, value in zip(
        glucose.measured_at_us, glucose.in_averages, glucose.glucose_mg_dl, strict=True
    ):
        if included and value is not None and start_us <= at_us < end_us:
            local = datetime.fromtimestamp(at_us / 1e6, zone)
            points.append(ModalDayPoint(local.hour + local.minute / 60 + local.second / 3600, value))
    return tuple(points)


def load_visit_report(
    sessions: sessionmaker[Session],
    store: ReadingStore,
    *,
    patient_id: str,
    user_id: str,
    days: int,
    glucose_unit: GlucoseUnit | None,
    now: datetime,
) -> VisitReport:
    """Everything the visit report of `days` local days ending at `now` shows. Blocking: call it from
    a worker thread. The caller has checked (and audited) the user's access to the patient."""
    with sessions() as session:
        params = patient_settings(session, [patient_id])[patient_id].parameters
        facts = _facts(session, patient_id, user_id, glucose_unit)
    start, end = query_window(params, now, days)
    bp = store.reading_columns(patient_id, ReadingKind.BLOOD_PRESSURE, start, end)
    glucose = store.reading_columns(patient_id, ReadingKind.GLUCOSE, start, end)
    summary = summarize(patient_id, bp, glucose, params, now=now, days=days)
    with sessions() as session:
        alerts = _alerts(session, patient_id, summary.period.start, summary.period.end)
    return VisitReport(
        clinic_name=facts.clinic_name,
        patient_id=patient_id,
        given_name=facts.given_name,
        family_name=facts.family_name,
        date_of_birth=facts.date_of_birth,
        generated_at=now.astimezone(UTC),
        generated_by=facts.generated_by,
        glucose_unit=facts.glucose_unit,
        summary=summary,
        targets=facts.targets,
        targets_set_by=facts.targets_set_by,
        targets_set_at=facts.targets_set_at,
        alerts=alerts,
        modal_day=_modal_day(summary, glucose),
    )
