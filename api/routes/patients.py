"""The doctors' patient panel (triage) and the patient page's patient and summary.

Every number comes from the summary module (alerts.summaries), through the per-patient figures kept
in `patient_summaries` (alerts.summary_updater) for the panel, and straight from the readings for
the patient page. Values are canonical: mmHg, mg/dL.

Names appear here because the caller is the patient's own care team (or the clinic's administrator);
they never leave the clinic database for topics, logs or metrics. A panel listing is one audit entry
("read_panel", object "patient_panel", the number of patients in details; not each patient id),
written with the query: no trail, no panel (api/deps.py). A patient or summary read is audited on the
patient by the access check ("read_patient", "read_summary").
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from alerts.profiles import RuleParameters
from alerts.summaries import (
    PanelBloodPressure,
    PanelGlucose,
    PatientSummary,
    query_window,
    summarize,
)
from alerts.summary_updater import SUMMARY_VERSION, SummaryUpdater, patient_settings
from api.auth import Principal
from api.deps import ApiServices, CurrentUser, Services, commit_audited, patient_access
from api.routes.targets import RulesUse, rules_use
from storage.clinic.audit import record_audit
from storage.clinic.fleet import GatewayState
from storage.clinic.models import Clinic, Patient
from storage.clinic.panel import (
    AlertStateFilter,
    PanelEntry,
    PanelQuery,
    PanelSort,
    SortOrder,
    panel_page,
    patient_gateway,
    visible_patients,
)
from storage.clinic.summaries import stale_summaries
from vitals.payload import AlertSeverity
from vitals.readings import ReadingKind

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

MAX_PAGE: Final = 500
# A gateway reports its status every 60 s (gateway/app.py, status_interval_s); silent five times
# that long without a last will (a broker restart), it shows as offline (DEFAULT).
GATEWAY_SILENT_AFTER: Final = timedelta(minutes=5)
# How long a panel request spends computing figures it finds missing or expired (the updater's
# pass does the rest, and comes at the patients' midnight itself): a share of the panel's 300 ms.
INLINE_REFRESH_BUDGET_S: Final = 0.1


class SummaryDays(IntEnum):
    """The patient page's range selector: 7, 14, 30, 90 days or a year."""

    WEEK = 7
    TWO_WEEKS = 14
    MONTH = 30
    QUARTER = 90
    YEAR = 365


class SeverityCounts(BaseModel):
    """Active alerts (open, acknowledged, snoozed, escalated) by severity."""

    info: int
    warning: int
    urgent: int


class PanelAlerts(BaseModel):
    highest_severity: AlertSeverity | None = Field(description="of the active alerts")
    counts: SeverityCounts
    active: int
    oldest_unhandled_at: datetime | None = Field(
        description="opening time of the oldest active alert nobody acknowledged or snoozed"
    )
    needs_signoff: int = Field(description="urgent alerts that resolved unseen, not yet signed off")


class PatientGatewayOut(BaseModel):
    """The patient's gateway (through an active meter binding), heard from most recently. `online`:
    its last status said online and came within the last 5 minutes; `offline`: its last will or a
    final status came, or it has been silent longer; `unknown`: it never reported."""

    gateway_id: str
    state: GatewayState
    last_seen_at: datetime | None


class PanelRow(BaseModel):
    patient_id: str
    given_name: str
    family_name: str
    timezone: str = Field(description="IANA zone the patient's days and hours are counted in")
    alerts: PanelAlerts
    last_reading_at: datetime | None = Field(description="newest reading, valid or not ('last seen')")
    blood_pressure: PanelBloodPressure | None = Field(
        description="7-day home mean (ESH, alerts.summaries); null without a valid reading in the window"
    )
    bp_not_counted_7d: int = Field(
        description="valid blood pressures of the 7-day window left out of its mean: the first measured "
        "day's, which the home protocol discards (with blood_pressure null, the only ones of the week)"
    )
    glucose: PanelGlucose | None = Field(description="null without any valid glucose reading")
    days_with_data_30: int = Field(description="16 is the remote-monitoring threshold (CPT 99454)")
    gateway: PatientGatewayOut | None
    summary_computed_at: datetime | None = Field(description="when the figures above were computed")
    summary_current: bool = Field(
        description="false: the figures are being recomputed (expired at midnight, or never computed)"
    )


class PanelPage(BaseModel):
    total: int = Field(description="patients matching the filters, on every page")
    offset: int
    limit: int
    patients: list[PanelRow]


def _gateway(entry: PanelEntry) -> PatientGatewayOut | None:
    if entry.gateway_id is None or entry.gateway_state is None:
        return None
    return PatientGatewayOut(
        gateway_id=entry.gateway_id, state=entry.gateway_state, last_seen_at=entry.gateway_last_seen_at
    )


def _row(entry: PanelEntry, stale: set[str]) -> PanelRow:
    s = entry.summary or {}
    bp = None
    if s.get("bp_mean_systolic_mmhg") is not None:
        bp = PanelBloodPressure(
            mean_systolic_mmhg=s["bp_mean_systolic_mmhg"],
            mean_diastolic_mmhg=s["bp_mean_diastolic_mmhg"],
            readings=s["bp_readings"],
            days=s["bp_days"],
            category=s["bp_category"],
            target_systolic_mmhg=s["bp_target_systolic_mmhg"],
            target_diastolic_mmhg=s["bp_target_diastolic_mmhg"],
        )
    glucose = None
    if s.get("glucose_latest_mg_dl") is not None:
        glucose = PanelGlucose(
            latest_mg_dl=s["glucose_latest_mg_dl"],
            latest_at=s["glucose_latest_at"],
            time_in_range_percent=s["glucose_time_in_range_percent"],
            readings_14d=s["glucose_readings_14d"] or 0,
        )
    a = entry.alerts
    return PanelRow(
        patient_id=entry.patient_id,
        given_name=entry.given_name,
        family_name=entry.family_name,
        timezone=entry.timezone,
        alerts=PanelAlerts(
            highest_severity=a.highest_severity,
            counts=SeverityCounts(**{sev.value: n for sev, n in a.counts.items()}),
            active=a.active,
            oldest_unhandled_at=a.oldest_unhandled_at,
            needs_signoff=a.needs_signoff,
        ),
        last_reading_at=s.get("last_reading_at"),
        blood_pressure=bp,
        bp_not_counted_7d=s.get("bp_not_counted_7d") or 0,
        glucose=glucose,
        days_with_data_30=s.get("days_with_data_30") or 0,
        gateway=_gateway(entry),
        summary_computed_at=s.get("computed_at"),
        summary_current=entry.summary is not None and entry.patient_id not in stale,
    )


def _stale(sessions: sessionmaker[Session], user: Principal, now: datetime) -> list[str]:
    with sessions() as session:
        scope = visible_patients(user.user_id, user.clinic_id, user.roles)
        return stale_summaries(session, scope, now=now, version=SUMMARY_VERSION)


def _panel(
    sessions: sessionmaker[Session], user: Principal, query: PanelQuery, now: datetime, stale: set[str]
) -> PanelPage:
    with sessions() as session:
        page = panel_page(
            session, user_id=user.user_id, clinic_id=user.clinic_id, roles=user.roles, query=query, now=now
        )
        record_audit(
            session,
            actor=user.user_id,
            action="read_panel",
            object_type="patient_panel",
            object_id=None,
            clinic_id=user.clinic_id,
            details={"count": len(page.entries)},
        )
        commit_audited(session, "read_panel")
    return PanelPage(
        total=page.total,
        offset=query.offset,
        limit=query.limit,
        patients=[_row(entry, stale) for entry in page.entries],
    )


@router.get("")
async def patient_panel(
    user: CurrentUser,
    services: Services,
    sort: PanelSort = PanelSort.URGENCY,
    order: Annotated[
        SortOrder | None, Query(description="default: desc (most urgent, newest, highest first); name: asc")
    ] = None,
    q: Annotated[str | None, Query(max_length=100, description="part of the given or family name")] = None,
    alert_state: AlertStateFilter = AlertStateFilter.ANY,
    no_data_days: Annotated[
        int | None, Query(ge=1, le=3650, description="only patients without any reading for this many days")
    ] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> PanelPage:
    """The caller's patients (their care teams; the whole clinic for an administrator), by default in
    urgency order: highest active alert severity, then the oldest unhandled alert, then name."""
    now = datetime.now(UTC)
    query = PanelQuery(
        sort=sort,
        order=order,
        name_contains=q or None,
        alert_state=alert_state,
        no_data_days=no_data_days,
        offset=offset,
        limit=limit,
        gateway_silent_after=GATEWAY_SILENT_AFTER,
    )
    return await asyncio.to_thread(_fresh_panel, services, user, query, now)


def _fresh_panel(services: ApiServices, user: Principal, query: PanelQuery, now: datetime) -> PanelPage:
    """The panel, after recomputing missing or expired figures for `INLINE_REFRESH_BUDGET_S`; one
    worker thread for the whole request."""
    stale = _stale(services.clinic_sessions, user, now)
    if stale:
        updater = SummaryUpdater(services.reading_store, services.clinic_sessions)
        done = updater.refresh_within(stale, now, INLINE_REFRESH_BUDGET_S)
        stale = sorted(set(stale) - set(done))
    return _panel(services.clinic_sessions, user, query, now, set(stale))


# --- one patient ------------------------------------------------------------------------------------


class PatientOut(BaseModel):
    patient_id: str
    given_name: str
    family_name: str
    date_of_birth: date | None
    timezone: str
    targets: RulesUse = Field(
        description="the effective targets the rules use (as GET .../targets rules_use)"
    )
    gateway: PatientGatewayOut | None


def _patient(sessions: sessionmaker[Session], patient_id: str, now: datetime) -> PatientOut:
    with sessions() as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None  # the access check found it in the caller's clinic
        clinic = session.get(Clinic, patient.clinic_id)
        assert clinic is not None
        targets = rules_use(patient.targets, clinic)
        gateway = patient_gateway(
            session,
            patient_id=patient_id,
            clinic_id=clinic.clinic_id,
            now=now,
            silent_after=GATEWAY_SILENT_AFTER,
        )
        born = patient.date_of_birth
        return PatientOut(
            patient_id=patient.patient_id,
            given_name=patient.given_name,
            family_name=patient.family_name,
            date_of_birth=date.fromisoformat(born) if born else None,
            timezone=targets.timezone,
            targets=targets,
            gateway=None
            if gateway is None
            else PatientGatewayOut(
                gateway_id=gateway.gateway_id, state=gateway.state, last_seen_at=gateway.last_seen_at
            ),
        )


@router.get("/{patient_id}")
async def read_patient(
    patient_id: Annotated[str, Depends(patient_access("read_patient"))], services: Services
) -> PatientOut:
    return await asyncio.to_thread(_patient, services.clinic_sessions, patient_id, datetime.now(UTC))


@router.get("/{patient_id}/summary")
async def read_summary(
    patient_id: Annotated[str, Depends(patient_access("read_summary"))],
    services: Services,
    days: Annotated[
        SummaryDays, Query(description="the period: this many local days, today included")
    ] = SummaryDays.TWO_WEEKS,
) -> PatientSummary:
    """Blood pressure and glucose summaries of the period (alerts.summaries): the home mean per the ESH
    protocol, ranges per Battelino 2019, GMI, CV, hypoglycaemia events, AGP, excluded readings."""
    now = datetime.now(UTC)
    params = await asyncio.to_thread(_parameters, services.clinic_sessions, patient_id)
    start, end = query_window(params, now, int(days))
    store = services.reading_store
    blood_pressure, glucose = await asyncio.gather(
        asyncio.to_thread(store.reading_columns, patient_id, ReadingKind.BLOOD_PRESSURE, start, end),
        asyncio.to_thread(store.reading_columns, patient_id, ReadingKind.GLUCOSE, start, end),
    )
    return await asyncio.to_thread(
        summarize, patient_id, blood_pressure, glucose, params, now=now, days=int(days)
    )


def _parameters(sessions: sessionmaker[Session], patient_id: str) -> RuleParameters:
    """The patient's rule parameters: effective targets, time zone (the access check found them)."""
    with sessions() as session:
        return patient_settings(session, [patient_id])[patient_id].parameters
