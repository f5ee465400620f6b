"""Alert inbox, actions and the live event stream.

- GET  /api/v1/alerts?view=active|needs_signoff|recent&patient_id=&limit=
                                           the user's inbox (their care-team patients; all for admins)
- GET  /api/v1/alerts/events               server-sent events: every alert change in the user's reach
- GET  /api/v1/alerts/{alert_id}           one alert with its event history (who, when, note)
- POST /api/v1/alerts/{alert_id}/ack       acknowledge (one state for every channel)
- POST /api/v1/alerts/{alert_id}/snooze    snooze this alert only (never another rule), for a preset
- POST /api/v1/alerts/{alert_id}/resolve   resolve with a note
- POST /api/v1/alerts/{alert_id}/signoff   sign off an urgent alert that resolved unseen
- POST /api/v1/alerts/reports              patient-reported input the meters cannot send
The composition root hands an `AlertApi` in as `ApiServices.alerts`. Another clinic's or
another team's alert answers 404, never 403 (no existence leak, OWASP API1). Every member of the
patient's care team may act on an alert, whatever their role: a nurse (clinic_staff) acknowledges,
snoozes, resolves and signs off as the family doctor does.

The inbox lists each alert once, with the patient's names: its callers are the patient's care team
(or the clinic's administrators). Channels (e-mail, MQTT, webhooks, the live stream) carry opaque ids
only. The live stream sends each change once per subscriber (`id:` is the change's event id); after
a reconnect the web app reloads the inbox and upserts by `alert_id`.

Audit (api/deps.py): an alert the user may not see is a denied entry (object "alert"). Reading one
("read_alert") and acting on one ("acknowledge_alert", "snooze_alert", "resolve_alert",
"sign_off_alert") is an allowed entry naming the alert, with its patient id in details, written with
the access check before anything is read or changed: no trail, no action. An action the lifecycle
then refuses (409, or the alert gone) adds an "error" entry with the reason. The inbox is one entry
with the count ("read_alert_inbox"), or, for one patient, an entry on that patient
("read_patient_alerts").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Final, Literal

from fastapi import APIRouter, Body, Depends, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alerts.catalogue import OPERATIONAL, RULES
from alerts.lifecycle import NOTE_LENGTH, SYSTEM_ACTOR, AlertNotFound, AlertRecord, InvalidTransition
from alerts.model import PatientReport, ReportKind
from alerts.repository import InboxEntry, InboxView, SqlAlertRepository
from api.deps import (
    AuditedAccess,
    CurrentUser,
    Services,
    audit_listing,
    check_patient_access,
    commit_audited,
)
from api.errors import ApiError, ErrorCode, validation_error
from api.limits import OPAQUE_ID_MAX, SYMPTOM_MAX, BoundedDatetime
from api.live_events import alert_event_stream
from api.services import AlertApi
from storage.clinic.audit import AuditOutcome, record_audit
from storage.clinic.models import UserRole
from vitals.payload import AlertSeverity, AlertState

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

MAX_REPORT_CLOCK_SKEW = timedelta(minutes=5)
PATIENT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"  # vitals.payload _ID
# Snooze presets, minutes: Nightscout's snooze menus (15 to 120 min, clinical-rules.md §5 [58]), then
# a half day, a working day and the lifecycle's 24 h limit (alerts.lifecycle.MAX_SNOOZE).
SNOOZE_PRESETS_MIN: Final = (15, 30, 60, 120, 240, 480, 1440)
SnoozeMinutes = Literal[15, 30, 60, 120, 240, 480, 1440]

if TYPE_CHECKING:
    RuleId = str
else:
    # Every rule of the catalogue, as an enum in the OpenAPI schema: the web app's rule titles are
    # type-checked against it.
    RuleId = StrEnum("RuleId", {rule_id: rule_id for rule_id in RULES})

# What a trigger value may be: a number, a word, a flag, or a list of those (alerts.reading_rules, window_rules).
TriggerValue = int | float | str | bool | list[int | float | str | bool | None] | None


def get_alert_api(services: Services) -> AlertApi:
    api = services.alerts
    if api is None:
        raise ApiError(ErrorCode.SERVICE_UNAVAILABLE, "alert service not configured")
    return api


Alerts = Annotated[AlertApi, Depends(get_alert_api)]


def _trigger_values(raw: object) -> dict[str, TriggerValue]:
    """The trigger values as the schema states them; anything else (never written by the rules
    today) is passed on as its JSON text rather than failing the whole inbox."""
    out: dict[str, TriggerValue] = {}
    for key, value in (raw if isinstance(raw, dict) else {}).items():
        scalar = (float, int, str, bool, type(None))
        if isinstance(value, scalar):
            out[str(key)] = value
        elif isinstance(value, list) and all(isinstance(v, scalar) for v in value):
            out[str(key)] = list(value)
        else:
            out[str(key)] = json.dumps(value, sort_keys=True, default=str)
    return out


class AlertOut(BaseModel):
    alert_id: str
    patient_id: str
    patient_given_name: str
    patient_family_name: str
    rule_id: RuleId
    title: str = Field(description="English title (the web app shows its own, by rule_id)")
    citation: str
    severity: AlertSeverity
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_by_name: str | None
    snoozed_until: datetime | None
    escalation_level: int
    window_start: datetime | None
    window_end: datetime | None
    values: dict[str, TriggerValue] = Field(description="trigger values, canonical units, keyed by name")
    reading_ids: list[str]
    resolved_by: str | None = Field(description="the clinician who resolved it; null: the engine")
    resolved_by_name: str | None
    resolution_note: str | None
    needs_signoff: bool = Field(description="urgent, resolved before a clinician saw it: sign it off")
    signed_off_at: datetime | None
    signed_off_by: str | None
    signed_off_by_name: str | None

    @classmethod
    def of(cls, entry: InboxEntry, names: dict[str, str]) -> AlertOut:
        rec = entry.record
        tv = rec.trigger_values

        def name(user_id: str | None) -> str | None:
            return names.get(user_id) if user_id else None

        return cls(
            alert_id=rec.alert_id,
            patient_id=rec.patient_id,
            patient_given_name=entry.patient_given_name,
            patient_family_name=entry.patient_family_name,
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
            acknowledged_by_name=name(rec.acknowledged_by),
            snoozed_until=rec.snoozed_until,
            escalation_level=rec.escalation_level,
            window_start=rec.window_start,
            window_end=rec.window_end,
            values=_trigger_values(tv.get("values")),
            reading_ids=[str(r) for r in tv.get("reading_ids") or []],
            resolved_by=rec.resolved_by,
            resolved_by_name=name(rec.resolved_by),
            resolution_note=rec.resolution_note,
            needs_signoff=rec.needs_signoff,
            signed_off_at=rec.signed_off_at,
            signed_off_by=rec.signed_off_by,
            signed_off_by_name=name(rec.signed_off_by),
        )


def _people(records: Iterable[AlertRecord]) -> set[str]:
    return {
        user_id
        for rec in records
        for user_id in (rec.acknowledged_by, rec.resolved_by, rec.signed_off_by)
        if user_id is not None
    }


class EventOut(BaseModel):
    at: datetime
    actor: str = Field(description="user id, or 'system'")
    actor_name: str | None = Field(description="the clinician's display name; null for the system")
    event: str = Field(
        description="opened, severity_raised, acknowledged, snoozed, resolved, signed_off, ..."
    )
    from_state: AlertState | None
    to_state: AlertState | None
    severity: AlertSeverity | None
    details: dict[str, TriggerValue] = Field(description="note, until, needs_signoff, reading_ids, ...")


class AlertDetail(AlertOut):
    events: list[EventOut]


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: SnoozeMinutes = Field(description="one of the presets: 15, 30, 60, 120, 240, 480, 1440")


Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_LENGTH)]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note = Field(description="what was done; required")


class SignOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=NOTE_LENGTH)] | None = None


Symptom = Annotated[str, StringConstraints(min_length=1, max_length=SYMPTOM_MAX)]


class ReportIn(BaseModel):
    patient_id: str = Field(pattern=PATIENT_ID_PATTERN, max_length=OPAQUE_ID_MAX)
    kind: ReportKind
    reported_at: BoundedDatetime | None = None
    symptoms: list[Symptom] = Field(default_factory=list, max_length=20)
    ketones_mmol_l: float | None = Field(default=None, ge=0, le=30)
    seated_systolic_mmhg: float | None = Field(default=None, ge=40, le=300)
    standing_systolic_mmhg: float | None = Field(default=None, ge=40, le=300)


def _handles_equipment(user: CurrentUser) -> bool:
    """Operational alerts (a gateway offline, a meter's battery low) are the clinic staff's and the
    administrator's work; a family doctor's inbox holds the patients' clinical alerts only."""
    return bool(user.roles & {UserRole.CLINIC_STAFF, UserRole.CLINIC_ADMIN})


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
        raise ApiError(ErrorCode.ALERT_NOT_FOUND)
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


def _entries_out(repository: SqlAlertRepository, entries: list[InboxEntry]) -> list[AlertOut]:
    names = repository.display_names(_people(e.record for e in entries))
    return [AlertOut.of(e, names) for e in entries]


@router.get("", response_model=list[AlertOut])
async def inbox(
    user: CurrentUser,
    services: Services,
    api: Alerts,
    view: Annotated[
        InboxView,
        Query(
            description="active: open, acknowledged, snoozed, escalated (most severe, then oldest first); "
            "needs_signoff: urgent alerts that resolved unseen; recent: resolved in the last 7 days"
        ),
    ] = InboxView.ACTIVE,
    patient_id: Annotated[str | None, Query(pattern=PATIENT_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[AlertOut]:
    if patient_id is not None:
        access = AuditedAccess("read_patient_alerts", details={"view": view.value})
        if not await check_patient_access(services, user, patient_id, access):
            raise ApiError(ErrorCode.PATIENT_NOT_FOUND, field="patient_id")
    entries = await asyncio.to_thread(
        api.repository.inbox,
        user.clinic_id,
        user.user_id,
        all_patients=_is_admin(user),
        view=view,
        now=api.engine.clock(),
        patient_id=patient_id,
        limit=limit,
        without_rules=frozenset() if _handles_equipment(user) else OPERATIONAL,
    )
    if patient_id is None:
        await audit_listing(services, user, "read_alert_inbox", {"count": len(entries)})
    return await asyncio.to_thread(_entries_out, api.repository, entries)


@router.get("/events")
async def events(
    user: CurrentUser,
    services: Services,
    api: Alerts,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="end the stream after N events")] = None,
) -> StreamingResponse:
    """Server-sent events: `event: alert`, `id: <event id>`, `data: <AlertEvent + link, escalation
    level, needs_signoff JSON>`. One event per lifecycle change, each sent once; alerts of patients
    the user may see (the care teams they are on; the clinic for an administrator).

    The stream outlives the request that opened it, so the user's session is checked again before
    every event and at least every SESSION_RECHECK_S: once it is signed out, or the account
    deactivated or its roles changed, no further event is sent and the stream ends (api/sessions.py)."""
    admin = _is_admin(user)
    await audit_listing(services, user, "subscribe_alert_events", {})

    return StreamingResponse(
        alert_event_stream(services, api, user, admin, limit),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/reports", status_code=status.HTTP_202_ACCEPTED, response_model=list[AlertOut])
async def add_report(body: ReportIn, user: CurrentUser, services: Services, api: Alerts) -> list[AlertOut]:
    """Symptoms, a severe hypo event, ketones, a medication change or a standing BP: input the
    gateway cannot supply (BP-CRIT-3, BP-LOW-1/2, GLU-HYPO-3, GLU-HIGH-3)."""
    access = AuditedAccess("add_patient_report", details={"kind": body.kind.value})
    if not await check_patient_access(services, user, body.patient_id, access):
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND, field="patient_id")
    now = datetime.now(UTC)
    reported_at = (body.reported_at or now).astimezone(UTC)
    if reported_at > now + MAX_REPORT_CLOCK_SKEW:
        # A future time would make every time-based rule evaluate at that future "now".
        raise validation_error("reported_at", "datetime_past", "reported_at is in the future")
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
    return [await _out(api, c.record) for c in changes]


async def _out(api: AlertApi, rec: AlertRecord) -> AlertOut:
    entry = await asyncio.to_thread(api.repository.entry, rec.alert_id)
    if entry is None:  # the patient's record was deleted meanwhile
        raise ApiError(ErrorCode.ALERT_NOT_FOUND)
    return (await asyncio.to_thread(_entries_out, api.repository, [entry]))[0]


@router.get("/{alert_id}", response_model=AlertDetail)
async def detail(alert_id: str, user: CurrentUser, services: Services, api: Alerts) -> AlertDetail:
    rec = await _visible(alert_id, user, services, api, "read_alert")
    history = await asyncio.to_thread(api.repository.events, alert_id)
    alert = await _out(api, rec)
    names = await asyncio.to_thread(
        api.repository.display_names, {e.actor for e in history if e.actor != SYSTEM_ACTOR}
    )
    events_out = [
        EventOut(
            at=e.at,
            actor=e.actor,
            actor_name=names.get(e.actor) if e.actor != SYSTEM_ACTOR else None,
            event=e.event,
            from_state=e.from_state,
            to_state=e.to_state,
            severity=e.severity,
            details=_trigger_values(e.details),
        )
        for e in history
    ]
    return AlertDetail(**alert.model_dump(), events=events_out)


async def _act(
    action_result: Awaitable[AlertRecord],
    services: Services,
    user: CurrentUser,
    api: AlertApi,
    alert_id: str,
    action: str,
) -> AlertOut:
    try:
        rec = await action_result
    except AlertNotFound as exc:
        await asyncio.to_thread(_record_refused_action, services, user, alert_id, action, "alert_not_found")
        raise ApiError(ErrorCode.ALERT_NOT_FOUND) from exc
    except InvalidTransition as exc:
        await asyncio.to_thread(
            _record_refused_action, services, user, alert_id, action, "invalid_transition"
        )
        raise ApiError(ErrorCode.ALERT_INVALID_TRANSITION, str(exc)) from exc
    return await _out(api, rec)


@router.post("/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(alert_id: str, user: CurrentUser, services: Services, api: Alerts) -> AlertOut:
    action = "acknowledge_alert"
    await _visible(alert_id, user, services, api, action)
    return await _act(api.engine.acknowledge(alert_id, user.user_id), services, user, api, alert_id, action)


@router.post("/{alert_id}/snooze", response_model=AlertOut)
async def snooze(
    alert_id: str, body: SnoozeIn, user: CurrentUser, services: Services, api: Alerts
) -> AlertOut:
    action = "snooze_alert"
    await _visible(alert_id, user, services, api, action)
    until = api.engine.clock() + timedelta(minutes=body.minutes)
    return await _act(api.engine.snooze(alert_id, user.user_id, until), services, user, api, alert_id, action)


@router.post("/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: str, body: ResolveIn, user: CurrentUser, services: Services, api: Alerts
) -> AlertOut:
    action = "resolve_alert"
    await _visible(alert_id, user, services, api, action)
    return await _act(
        api.engine.resolve(alert_id, user.user_id, body.note), services, user, api, alert_id, action
    )


@router.post("/{alert_id}/signoff", response_model=AlertOut)
async def sign_off(
    alert_id: str,
    user: CurrentUser,
    services: Services,
    api: Alerts,
    body: Annotated[SignOffIn | None, Body()] = None,
) -> AlertOut:
    """Sign off an urgent alert that resolved before a clinician saw it (view=needs_signoff): it
    leaves that list, and its history names who signed it off, when, with the note. 409 for an alert
    that does not need it."""
    action = "sign_off_alert"
    await _visible(alert_id, user, services, api, action)
    note = body.note if body is not None else None
    return await _act(
        api.engine.sign_off(alert_id, user.user_id, note), services, user, api, alert_id, action
    )
