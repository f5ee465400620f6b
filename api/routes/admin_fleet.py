"""The clinic's gateways at work, for its administrators: state, outboxes, meters, unbound readings.

- GET  /api/v1/admin/fleet/gateways                                  every gateway of the clinic:
       online/offline/unknown, last seen, outbox depth, oldest unacked age, meters (last sync,
       battery, RSSI, last error) and who they are bound to
- GET  /api/v1/admin/fleet/unbound[?gateway_id=]                      readings the gateways keep aside,
       attributed to nobody, per gateway and meter (user slot): counts, time span, reasons, and the
       decisions still waiting for the gateway (never values)
- POST /api/v1/admin/fleet/gateways/{gateway_id}/unbound/adopt       attribute them to a patient
- POST /api/v1/admin/fleet/gateways/{gateway_id}/unbound/discard     delete them from the gateway

Only `clinic_admin`, and only for gateways of their own clinic (another clinic's is 404, as absent).
Every read is audited with a count, every decision with its ids and span, every refusal as denied
(api.deps). A decision is recorded first (storage.clinic.unbound_readings) and then sent to the gateway on its
retained `commands` topic by the composition root's fleet service (`ApiServices.fleet`); the answer
says whether that went out. The gateway carries each command out once; adopted readings then travel
as any reading and are stored under the chosen patient once (their ids are the same).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.deps import ApiServices, CurrentUser, Services, commit_audited, commit_denial
from api.limits import OPAQUE_ID_MAX, BoundedDatetime
from api.services import FleetCommands
from storage.clinic.audit import record_audit
from storage.clinic.fleet import FleetGateway, GatewayState, fleet_gateways
from storage.clinic.models import METER_KEY_LENGTH, UserRole
from storage.clinic.unbound_readings import (
    FleetConflict,
    FleetError,
    FleetNotFound,
    UnboundGroup,
    decide_release,
    release_json,
    unbound_groups,
)
from vitals.payload import UnboundAction, UnboundReason

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/admin/fleet", tags=["admin", "fleet"])

GATEWAY_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
PATIENT_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
GatewayId = Annotated[str, Path(pattern=GATEWAY_ID)]
DEFAULT_STALE_AFTER: Final = timedelta(minutes=10)


def _fleet(services: ApiServices) -> FleetCommands | None:
    return services.fleet


# -- answers ------------------------------------------------------------------------------------


class MeterOut(BaseModel):
    meter_key: str
    last_sync_at: datetime | None
    battery_percent: int | None
    rssi_dbm: int | None
    last_error: str | None
    patient_ids: list[str] = Field(description="bound to now through this gateway")


class FleetGatewayOut(BaseModel):
    gateway_id: str
    active: bool
    state: GatewayState
    last_seen_at: datetime | None
    offline_since: datetime | None
    reported_at: datetime | None = Field(description="the gateway's own clock, for its last report")
    software_version: str | None
    outbox_depth: int | None
    outbox_capacity: int | None
    outbox_full: bool
    oldest_unacked_age_s: float | None
    unbound_readings: int
    last_error: str | None
    meters: list[MeterOut]
    patient_ids: list[str]


class FleetPage(BaseModel):
    gateways: list[FleetGatewayOut]
    stale_after_s: float = Field(description="a gateway silent this long is shown offline")


class PendingDecisionOut(BaseModel):
    command_id: str
    action: UnboundAction
    patient_id: str | None
    measured_from: datetime
    measured_to: datetime
    decided_by: str | None
    decided_at: datetime


class UnboundGroupOut(BaseModel):
    gateway_id: str
    meter_key: str
    user_id: int | None
    count: int
    first_measured_at: datetime
    last_measured_at: datetime
    reasons: dict[UnboundReason, int]
    reported_at: datetime
    bound_patient_ids: list[str]
    pending: list[PendingDecisionOut]


class UnboundPage(BaseModel):
    groups: list[UnboundGroupOut]


class CommandDelivery(StrEnum):
    PUBLISHED = "published"
    FAILED = "failed"  # recorded; sent again when the gateway next reports, or on the next decision
    NOT_CONFIGURED = "not_configured"  # this API process has no broker connection for commands


class DecisionOut(BaseModel):
    command_id: str
    gateway_id: str
    meter_key: str
    user_id: int | None
    action: UnboundAction
    patient_id: str | None
    measured_from: datetime
    measured_to: datetime
    readings: int = Field(description="how many the gateway reported in the span when decided")
    delivery: CommandDelivery


class _DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meter_key: str = Field(min_length=1, max_length=METER_KEY_LENGTH)
    user_id: int | None = Field(default=None, ge=0, le=254, description="the cuff's user slot")
    measured_from: BoundedDatetime | None = Field(
        default=None, description="default: all the gateway reported"
    )
    measured_to: BoundedDatetime | None = None


class AdoptIn(_DecisionIn):
    patient_id: str = Field(pattern=PATIENT_ID, max_length=OPAQUE_ID_MAX)


class DiscardIn(_DecisionIn):
    pass


def _gateway_out(g: FleetGateway) -> FleetGatewayOut:
    return FleetGatewayOut(
        gateway_id=g.gateway_id,
        active=g.active,
        state=g.state,
        last_seen_at=g.last_seen_at,
        offline_since=g.offline_since,
        reported_at=g.reported_at,
        software_version=g.software_version,
        outbox_depth=g.outbox_depth,
        outbox_capacity=g.outbox_capacity,
        outbox_full=g.outbox_full,
        oldest_unacked_age_s=g.oldest_unacked_age_s,
        unbound_readings=g.unbound_readings,
        last_error=g.last_error,
        meters=[
            MeterOut(
                meter_key=m.meter_key,
                last_sync_at=m.last_sync_at,
                battery_percent=m.battery_percent,
                rssi_dbm=m.rssi_dbm,
                last_error=m.last_error,
                patient_ids=list(m.patient_ids),
            )
            for m in g.meters
        ],
        patient_ids=list(g.patient_ids),
    )


def _group_out(g: UnboundGroup) -> UnboundGroupOut:
    return UnboundGroupOut(
        gateway_id=g.gateway_id,
        meter_key=g.meter_key,
        user_id=g.user_id,
        count=g.count,
        first_measured_at=g.first_measured_at,
        last_measured_at=g.last_measured_at,
        reasons={UnboundReason(k): v for k, v in g.reasons.items()},
        reported_at=g.reported_at,
        bound_patient_ids=list(g.bound_patient_ids),
        pending=[
            PendingDecisionOut(
                command_id=p.command_id,
                action=p.action,
                patient_id=p.patient_id,
                measured_from=p.measured_from,
                measured_to=p.measured_to,
                decided_by=p.decided_by,
                decided_at=p.decided_at,
            )
            for p in g.pending
        ],
    )


# -- access and audit ---------------------------------------------------------------------------


def _denied(
    sessions: sessionmaker[Session], user: Principal, action: str, object_id: str | None, reason: str
) -> None:
    with sessions() as session:
        commit_denial(
            session,
            actor=user.user_id,
            action=action,
            object_type="gateway" if object_id else "clinic",
            object_id=object_id or user.clinic_id,
            clinic_id=user.clinic_id,
            details={"reason": reason},
        )


async def _require_admin(
    services: ApiServices, user: Principal, action: str, object_id: str | None = None
) -> None:
    if UserRole.CLINIC_ADMIN not in user.roles:
        await asyncio.to_thread(
            _denied, services.clinic_sessions, user, action, object_id, "not_clinic_admin"
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only clinic administrators may see the fleet")


def _read_audited(
    sessions: sessionmaker[Session], user: Principal, action: str, read: Any, details: dict[str, Any]
) -> Any:
    with sessions() as session:
        result = read(session)
        record_audit(
            session,
            actor=user.user_id,
            action=action,
            object_type="clinic",
            object_id=user.clinic_id,
            clinic_id=user.clinic_id,
            details={**details, "count": len(result)},
        )
        commit_audited(session, action)
        return result


# -- routes -------------------------------------------------------------------------------------


@router.get("/gateways")
async def list_fleet(user: CurrentUser, services: Services) -> FleetPage:
    await _require_admin(services, user, "read_fleet")
    fleet = _fleet(services)
    stale = fleet.stale_after if fleet is not None else DEFAULT_STALE_AFTER
    now = datetime.now(UTC)
    gateways: list[FleetGateway] = await asyncio.to_thread(
        _read_audited,
        services.clinic_sessions,
        user,
        "read_fleet",
        lambda s: fleet_gateways(s, clinic_id=user.clinic_id, now=now, stale_after=stale),
        {},
    )
    return FleetPage(gateways=[_gateway_out(g) for g in gateways], stale_after_s=stale.total_seconds())


@router.get("/unbound")
async def list_unbound(
    user: CurrentUser,
    services: Services,
    gateway_id: Annotated[str | None, Query(pattern=GATEWAY_ID)] = None,
) -> UnboundPage:
    await _require_admin(services, user, "read_unbound_readings", gateway_id)
    groups: list[UnboundGroup] = await asyncio.to_thread(
        _read_audited,
        services.clinic_sessions,
        user,
        "read_unbound_readings",
        lambda s: unbound_groups(s, clinic_id=user.clinic_id, gateway_id=gateway_id),
        {"gateway_id": gateway_id} if gateway_id else {},
    )
    return UnboundPage(groups=[_group_out(g) for g in groups])


def _decide(
    sessions: sessionmaker[Session],
    user: Principal,
    gateway_id: str,
    action: UnboundAction,
    body: _DecisionIn,
    patient_id: str | None,
) -> dict[str, Any]:
    audit_action = f"{action.value}_unbound_readings"
    with sessions() as session:
        try:
            record = decide_release(
                session,
                clinic_id=user.clinic_id,
                gateway_id=gateway_id,
                meter_key=body.meter_key,
                user_id=body.user_id,
                action=action,
                patient_id=patient_id,
                decided_by=user.user_id,
                decided_at=datetime.now(UTC),
                measured_from=body.measured_from,
                measured_to=body.measured_to,
            )
        except FleetError as exc:
            session.rollback()
            commit_denial(
                session,
                actor=user.user_id,
                action=audit_action,
                object_type="gateway",
                object_id=gateway_id,
                clinic_id=user.clinic_id,
                details={"reason": type(exc).__name__, "meter_key": body.meter_key, "patient_id": patient_id},
            )
            raise
        decided = release_json(record)
        record_audit(
            session,
            actor=user.user_id,
            action=audit_action,
            object_type="gateway",
            object_id=gateway_id,
            clinic_id=user.clinic_id,
            details=decided,
        )
        commit_audited(session, audit_action)
        return decided


async def _decision(
    services: ApiServices,
    user: Principal,
    gateway_id: str,
    action: UnboundAction,
    body: _DecisionIn,
    patient_id: str | None,
) -> DecisionOut:
    await _require_admin(services, user, f"{action.value}_unbound_readings", gateway_id)
    try:
        decided = await asyncio.to_thread(
            _decide, services.clinic_sessions, user, gateway_id, action, body, patient_id
        )
    except FleetNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except FleetConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except FleetError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    fleet = _fleet(services)
    delivery = CommandDelivery.NOT_CONFIGURED
    if fleet is not None:
        try:
            await fleet.publish_commands(gateway_id)
            delivery = CommandDelivery.PUBLISHED
        except Exception as exc:  # the decision stands; the fleet service sends it again
            logger.warning(
                "gateway commands not published",
                extra={"gateway_id": gateway_id, "error": type(exc).__name__},
            )
            delivery = CommandDelivery.FAILED
    return DecisionOut(**decided, delivery=delivery)


@router.post("/gateways/{gateway_id}/unbound/adopt", status_code=status.HTTP_202_ACCEPTED)
async def adopt_unbound(
    gateway_id: GatewayId, body: AdoptIn, user: CurrentUser, services: Services
) -> DecisionOut:
    """Attribute the gateway's unbound readings of a meter (user slot) to a patient of the clinic."""
    return await _decision(services, user, gateway_id, UnboundAction.ADOPT, body, body.patient_id)


@router.post("/gateways/{gateway_id}/unbound/discard", status_code=status.HTTP_202_ACCEPTED)
async def discard_unbound(
    gateway_id: GatewayId, body: DiscardIn, user: CurrentUser, services: Services
) -> DecisionOut:
    """Delete the gateway's unbound readings of a meter (user slot) for good."""
    return await _decision(services, user, gateway_id, UnboundAction.DISCARD, body, None)
