"""Alert inbox, actions and the live event stream (issue #7).

- GET  /api/v1/alerts                      the user's inbox (their care-team patients; all for admins)
- GET  /api/v1/alerts/events               server-sent events: every alert change in the user's clinic
- GET  /api/v1/alerts/{alert_id}           one alert with its event history
- POST /api/v1/alerts/{alert_id}/ack       acknowledge (one state for every channel)
- POST /api/v1/alerts/{alert_id}/snooze    snooze this alert only (never another rule)
- POST /api/v1/alerts/{alert_id}/resolve   resolve with a note
- POST /api/v1/alerts/reports              patient-reported input the meters cannot send
The composition root puts an `AlertApi` into `ApiServices.extras["alerts"]`. Another clinic's or
another team's alert answers 404, never 403 (no existence leak, OWASP API1).

Audit (api/deps.py): an alert the user may not see is a denied entry (object "alert"). Reading one
("read_alert") and acting on one ("acknowledge_alert", "snooze_alert", "resolve_alert") is an allowed
entry naming the alert, with its patient id in details, written with the access check before anything
is read or changed: no trail, no action. An action the lifecycle then refuses (409, or the alert gone)
adds an "error" entry with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from alerts.catalogue import RULES
from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.lifecycle import AlertNotFound, AlertRecord, InvalidTransition
from alerts.model import PatientReport, ReportKind
from alerts.repository import SqlAlertRepository
from api.deps import (
    AuditedAccess,
    CurrentUser,
    Services,
    audit_listing,
    check_patient_access,
    commit_audited,
)
from storage.clinic.audit import AuditOutcome, record_audit
from storage.clinic.models import UserRole
from vitals.payload import AlertSeverity, AlertState

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

KEEPALIVE_S = 15.0
MAX_SNOOZE_MIN = 24 * 60
MAX_REPORT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class AlertApi:
    engine: AlertEngine
    repository: SqlAlertRepository
    hub: EventHub


def get_alert_api(services: Services) -> AlertApi:
    api = services.extras.get("alerts")
    if not isinstance(api, AlertApi):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "alert service not configured")
    return api


Alerts = Annotated[AlertApi, Depends(get_alert_api)]


class AlertOut(BaseModel):
    alert_id: str
    patient_id: str
    rule_id: str
    title: str
    citation: str
    severity: AlertSeverity
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    snoozed_until: datetime | None
    escalation_level: int
    window_start: datetime | None
    window_end: datetime | None
    values: dict[str, Any]
    reading_ids: list[str]

    @classmethod
    def of(cls, rec: AlertRecord) -> AlertOut:
        tv = rec.trigger_values
        return cls(
            alert_id=rec.alert_id,
            patient_id=rec.patient_id,
            rule_id=rec.rule_id,
            title=RULES[rec.rule_id].title,
            citation=RULES[rec.rule_id].citation,
            severity=rec.severity,
            state=rec.state,
            opened_at=rec.opened_at,
            updated_at=rec.updated_at,
            resolved_at=rec.resolved_at,
            acknowledged_at=rec.acknowledged_at,
            acknowledged_by=rec.acknowledged_by,
            snoozed_until=rec.snoozed_until,
            escalation_level=rec.escalation_level,
            window_start=rec.window_start,
            window_end=rec.window_end,
            values=dict(tv.get("values") or {}),
            reading_ids=list(tv.get("reading_ids") or []),
        )


class EventOut(BaseModel):
    at: datetime
    actor: str
    event: str
    from_state: AlertState | None
    to_state: AlertState | None
    severity: AlertSeverity | None
    details: dict[str, Any]


class AlertDetail(AlertOut):
    events: list[EventOut]


class SnoozeIn(BaseModel):
    minutes: int = Field(ge=1, le=MAX_SNOOZE_MIN)


class ResolveIn(BaseModel):
    note: str = Field(min_length=1, max_length=1000)


class ReportIn(BaseModel):
    patient_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    kind: ReportKind
    reported_at: datetime | None = None
    symptoms: list[str] = Field(default_factory=list, max_length=20)
    ketones_mmol_l: float | None = Field(default=None, ge=0, le=30)
    seated_systolic_mmhg: float | None = Field(default=None, ge=40, le=300)
    standing_systolic_mmhg: float | None = Field(default=None, ge=40, le=300)


def _is_admin(user: CurrentUser) -> bool:
    return UserRole.CLINIC_ADMIN in user.roles


async def _visible(
    alert_id: str, user: CurrentUser, services: Services, api: AlertApi, action: str
) -> AlertRecord:
    """The alert, if the user may see its patient; 404 otherwise. Audited as `action` on the alert."""
    rec = await asyncio.to_thread(api.repository.get, alert_id)
    patient_id = rec.patient_id if rec is not None and rec.clinic_id == user.clinic_id else None
    access = AuditedAccess(action, object_type="alert", object_id=alert_id)
    if rec is None or not await check_patient_access(services, user, patient_id, access):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "alert not found")
    return rec


def _record_refused_action(
    services: Services, user: CurrentUser, alert_id: str, action: str, reason: str
) -> None:
    with services.clinic_sessions() as session:
        record_audit(
            session,
            actor=user.user_id,
            action=action,
            object_type="alert",
            object_id=alert_id,
            clinic_id=user.clinic_id,
            outcome=AuditOutcome.ERROR,
            details={"reason": reason},
        )
        commit_audited(session, action)


@router.get("", response_model=list[AlertOut])
async def inbox(
    user: CurrentUser,
    services: Services,
    api: Alerts,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[AlertOut]:
    records = await asyncio.to_thread(
        api.repository.inbox,
        user.clinic_id,
        user.user_id,
        all_patients=_is_admin(user),
        include_resolved=include_resolved,
        limit=limit,
    )
    await audit_listing(services, user, "read_alert_inbox", {"count": len(records)})
    return [AlertOut.of(r) for r in records]


@router.get("/events")
async def events(
    user: CurrentUser,
    services: Services,
    api: Alerts,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="end the stream after N events")] = None,
) -> StreamingResponse:
    """Server-sent events: `event: alert`, `id: <event id>`, `data: <AlertEvent + link JSON>`."""
    admin = _is_admin(user)
    await audit_listing(services, user, "subscribe_alert_events", {})

    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        async with api.hub.subscribe(user.clinic_id) as sub:
            yield b": connected\n\n"
            while limit is None or sent < limit:
                note = await sub.next(KEEPALIVE_S)
                if note is None:
                    if sub.dropped:
                        return
                    yield b": keep-alive\n\n"
                    continue
                if not admin and not await _on_team(api, user.user_id, note.event.patient_id):
                    continue
                data = json.dumps(note.body(), sort_keys=True)
                yield f"id: {note.event_id}\nevent: alert\ndata: {data}\n\n".encode()
                sent += 1

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _on_team(api: AlertApi, user_id: str, patient_id: str) -> bool:
    ctx = await asyncio.to_thread(api.engine.directory.context, patient_id)
    return ctx is not None and any(r.user_id == user_id for r in ctx.care_team)


@router.post("/reports", status_code=status.HTTP_202_ACCEPTED, response_model=list[AlertOut])
async def add_report(body: ReportIn, user: CurrentUser, services: Services, api: Alerts) -> list[AlertOut]:
    """Symptoms, a severe hypo event, ketones, a medication change or a standing BP: input the
    gateway cannot supply (BP-CRIT-3, BP-LOW-1/2, GLU-HYPO-3, GLU-HIGH-3)."""
    access = AuditedAccess("add_patient_report", details={"kind": body.kind.value})
    if not await check_patient_access(services, user, body.patient_id, access):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    now = datetime.now(UTC)
    reported_at = (body.reported_at or now).astimezone(UTC)
    if reported_at > now + MAX_REPORT_CLOCK_SKEW:
        # A future time would make every time-based rule evaluate at that future "now".
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "reported_at is in the future")
    key = json.dumps(body.model_dump(mode="json"), sort_keys=True) + user.user_id
    report = PatientReport(
        patient_id=body.patient_id,
        report_id=hashlib.sha256(key.encode()).hexdigest()[:32],
        reported_at=reported_at,
        kind=body.kind,
        symptoms=frozenset(body.symptoms),
        ketones_mmol_l=body.ketones_mmol_l,
        seated_systolic_mmhg=body.seated_systolic_mmhg,
        standing_systolic_mmhg=body.standing_systolic_mmhg,
    )
    changes = await api.engine.add_report(report)
    return [AlertOut.of(c.record) for c in changes]


@router.get("/{alert_id}", response_model=AlertDetail)
async def detail(alert_id: str, user: CurrentUser, services: Services, api: Alerts) -> AlertDetail:
    rec = await _visible(alert_id, user, services, api, "read_alert")
    history = await asyncio.to_thread(api.repository.events, alert_id)
    events_out = [
        EventOut(
            at=e.at,
            actor=e.actor,
            event=e.event,
            from_state=e.from_state,
            to_state=e.to_state,
            severity=e.severity,
            details=e.details,
        )
        for e in history
    ]
    return AlertDetail(**AlertOut.of(rec).model_dump(), events=events_out)


async def _act(coro: Any, services: Services, user: CurrentUser, alert_id: str, action: str) -> AlertOut:
    try:
        rec: AlertRecord = await coro
    except AlertNotFound as exc:
        await asyncio.to_thread(_record_refused_action, services, user, alert_id, action, "alert_not_found")
        raise HTTPException(status.HTTP_404_NOT_FOUND, "alert not found") from exc
    except InvalidTransition as exc:
        await asyncio.to_thread(
            _record_refused_action, services, user, alert_id, action, "invalid_transition"
        )
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return AlertOut.of(rec)


@router.post("/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(alert_id: str, user: CurrentUser, services: Services, api: Alerts) -> AlertOut:
    action = "acknowledge_alert"
    await _visible(alert_id, user, services, api, action)
    return await _act(api.engine.acknowledge(alert_id, user.user_id), services, user, alert_id, action)


@router.post("/{alert_id}/snooze", response_model=AlertOut)
async def snooze(
    alert_id: str, body: SnoozeIn, user: CurrentUser, services: Services, api: Alerts
) -> AlertOut:
    action = "snooze_alert"
    await _visible(alert_id, user, services, api, action)
    until = api.engine.clock() + timedelta(minutes=body.minutes)
    return await _act(api.engine.snooze(alert_id, user.user_id, until), services, user, alert_id, action)


@router.post("/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: str, body: ResolveIn, user: CurrentUser, services: Services, api: Alerts
) -> AlertOut:
    action = "resolve_alert"
    await _visible(alert_id, user, services, api, action)
    return await _act(api.engine.resolve(alert_id, user.user_id, body.note), services, user, alert_id, action)
