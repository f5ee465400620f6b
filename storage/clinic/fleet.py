"""The clinic's view of its gateways: each one's latest status report, the readings it keeps aside
unattributed, and administrators' decisions on them (DESIGN.md, MQTT: `status`, `commands`).

Keyword-only functions over a session; the caller commits (and audits, for decisions). The status
consumer (vitalgate.fleet) writes with `record_status`; the API (api.routes.admin_fleet) reads and
decides; the operational alert rules (alerts.operations) read `fleet_watches`.

Times: `received_at`, `last_seen_at` and `offline_since` are the clinic's clock (when it heard from
the gateway); `reported_at` is the gateway's. Nothing here holds a reading's value or a name.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.clinic.models import (
    ANY_DEVICE_USER,
    REASON_LENGTH,
    Gateway,
    GatewayStatusRecord,
    MeterBinding,
    Patient,
    UnboundReleaseRecord,
    cut_to,
)
from vitals.payload import (
    MAX_COMMANDS,
    GatewayCommands,
    GatewayStatus,
    MeterHealth,
    UnboundAction,
    UnboundRelease,
    UnboundSummary,
)


class FleetError(ValueError):
    """A decision that cannot be taken; the message says why (ids only)."""


class FleetNotFound(FleetError):
    """No such gateway in the caller's clinic, or no unbound readings of that meter on it."""


class FleetConflict(FleetError):
    """A decision on the same readings is still waiting for the gateway."""


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # last will or final status received, or no status for `stale_after`
    UNKNOWN = "unknown"  # never reported


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRecorded:
    """What one status message changed."""

    gateway_id: str
    clinic_id: str
    online: bool
    came_online: bool  # offline or never seen before
    newly_applied: tuple[str, ...]  # commands the gateway reports carried out for the first time
    pending_commands: int  # decisions the gateway has not yet reported carried out


def record_status(
    session: Session, status: GatewayStatus, *, received_at: datetime, retained: bool
) -> StatusRecorded | None:
    """Keep `status` as the gateway's latest; None for a gateway the clinic does not know.

    A message the broker kept (`retained`: delivered because this consumer subscribed, not because
    the gateway just spoke) is as old as its report: it moves `last_seen_at` no later than
    `reported_at`. A last will carries no outbox or meter figures: the last known ones are kept."""
    gateway = session.get(Gateway, status.gateway_id)
    if gateway is None:
        return None
    row = session.get(GatewayStatusRecord, status.gateway_id)
    was_online = row is not None and row.online
    heard_at = min(received_at, status.reported_at) if retained else received_at
    if row is None:
        row = GatewayStatusRecord(gateway_id=status.gateway_id, unbound=[], meters=[], unbound_readings=0)
        session.add(row)
    if status.online:
        if gateway.last_seen_at is None or heard_at > gateway.last_seen_at:
            gateway.last_seen_at = heard_at
        row.offline_since = None
    elif was_online or row.offline_since is None:
        row.offline_since = heard_at if not retained else (gateway.last_seen_at or heard_at)
    row.online = status.online
    row.reported_at = status.reported_at
    row.received_at = received_at
    if status.online or status.outbox_depth is not None:
        row.software_version = status.software_version
        row.outbox_depth = status.outbox_depth
        row.outbox_capacity = status.outbox_capacity
        row.outbox_full = status.outbox_full
        row.oldest_unacked_age_s = status.oldest_unacked_age_s
        row.unbound_readings = status.unbound_readings
        row.unbound = [u.model_dump(mode="json") for u in status.unbound]
        row.meters = [m.model_dump(mode="json") for m in status.meters]
        row.last_error = None if status.last_error is None else cut_to(status.last_error, REASON_LENGTH)
    newly_applied: tuple[str, ...] = ()
    if status.applied_commands:
        done = {c.command_id: c.readings for c in status.applied_commands}
        waiting = session.scalars(
            select(UnboundReleaseRecord).where(
                UnboundReleaseRecord.gateway_id == status.gateway_id,
                UnboundReleaseRecord.command_id.in_(list(done)),
                UnboundReleaseRecord.applied_at.is_(None),
            )
        )
        for record in waiting:
            record.applied_at = received_at
            record.readings = done[record.command_id]  # what the gateway found in the span
            newly_applied += (record.command_id,)
    pending = session.scalar(
        select(func.count())
        .select_from(UnboundReleaseRecord)
        .where(
            UnboundReleaseRecord.gateway_id == status.gateway_id, UnboundReleaseRecord.applied_at.is_(None)
        )
    )
    session.flush()
    return StatusRecorded(
        gateway_id=status.gateway_id,
        clinic_id=gateway.clinic_id,
        online=status.online,
        came_online=status.online and not was_online,
        newly_applied=newly_applied,
        pending_commands=int(pending or 0),
    )


def gateway_state(
    row: GatewayStatusRecord | None, gateway: Gateway, now: datetime, stale_after: timedelta
) -> GatewayState:
    if row is None:
        return GatewayState.UNKNOWN
    if not row.online:
        return GatewayState.OFFLINE
    if gateway.last_seen_at is None or now - gateway.last_seen_at > stale_after:
        return GatewayState.OFFLINE  # no status for a while, and no will either (a broker restart)
    return GatewayState.ONLINE


# -- the gateways page ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetMeter:
    meter_key: str
    last_sync_at: datetime | None
    battery_percent: int | None
    rssi_dbm: int | None
    last_error: str | None
    patient_ids: tuple[str, ...]  # bound now (active bindings through this gateway)


@dataclass(frozen=True, slots=True)
class FleetGateway:
    gateway_id: str
    active: bool
    state: GatewayState
    last_seen_at: datetime | None
    offline_since: datetime | None
    reported_at: datetime | None
    software_version: str | None
    outbox_depth: int | None
    outbox_capacity: int | None
    outbox_full: bool
    oldest_unacked_age_s: float | None
    unbound_readings: int
    last_error: str | None
    meters: tuple[FleetMeter, ...]
    patient_ids: tuple[str, ...]


def _active_bindings(session: Session, gateway_ids: Sequence[str]) -> list[MeterBinding]:
    if not gateway_ids:
        return []
    return list(
        session.scalars(
            select(MeterBinding)
            .join(Patient, Patient.patient_id == MeterBinding.patient_id)
            .where(MeterBinding.gateway_id.in_(gateway_ids), MeterBinding.active.is_(True), Patient.active)
            .order_by(MeterBinding.gateway_id, MeterBinding.meter_key, MeterBinding.device_user_id)
        )
    )


def fleet_gateways(
    session: Session, *, clinic_id: str, now: datetime, stale_after: timedelta, gateway_id: str | None = None
) -> list[FleetGateway]:
    """Every gateway of the clinic (or the one named) with its state and latest report."""
    query = select(Gateway).where(Gateway.clinic_id == clinic_id)
    if gateway_id is not None:
        query = query.where(Gateway.gateway_id == gateway_id)
    gateways = list(session.scalars(query.order_by(Gateway.gateway_id)))
    ids = [g.gateway_id for g in gateways]
    rows = {
        r.gateway_id: r
        for r in session.scalars(select(GatewayStatusRecord).where(GatewayStatusRecord.gateway_id.in_(ids)))
    }
    bound: dict[tuple[str, str], set[str]] = defaultdict(set)
    for b in _active_bindings(session, ids):
        bound[(b.gateway_id, b.meter_key)].add(b.patient_id)
    out = []
    for g in gateways:
        row = rows.get(g.gateway_id)
        reported = [MeterHealth.model_validate(m) for m in (row.meters if row else [])]
        names = {m.meter_key for m in reported}
        meters = [
            FleetMeter(m.meter_key, m.last_sync_at, m.battery_percent, m.rssi_dbm, m.last_error,
                       tuple(sorted(bound.get((g.gateway_id, m.meter_key), ()))))
            for m in reported
        ]  # fmt: skip
        # Meters bound here that the gateway has not reported yet (never connected).
        meters += [
            FleetMeter(key, None, None, None, None, tuple(sorted(patients)))
            for (gw, key), patients in sorted(bound.items())
            if gw == g.gateway_id and key not in names
        ]
        out.append(
            FleetGateway(
                gateway_id=g.gateway_id,
                active=g.active,
                state=gateway_state(row, g, now, stale_after),
                last_seen_at=g.last_seen_at,
                offline_since=row.offline_since if row else None,
                reported_at=row.reported_at if row else None,
                software_version=row.software_version if row else None,
                outbox_depth=row.outbox_depth if row else None,
                outbox_capacity=row.outbox_capacity if row else None,
                outbox_full=bool(row.outbox_full) if row else False,
                oldest_unacked_age_s=row.oldest_unacked_age_s if row else None,
                unbound_readings=row.unbound_readings if row else 0,
                last_error=row.last_error if row else None,
                meters=tuple(meters),
                patient_ids=tuple(
                    sorted({p for (gw, _k), ps in bound.items() if gw == g.gateway_id for p in ps})
                ),
            )
        )
    return out


@dataclass(slots=True)
class ClinicFleetGauges:
    clinic_id: str
    gateways: dict[GatewayState, int] = field(default_factory=lambda: dict.fromkeys(GatewayState, 0))
    outbox_depth_max: int = 0
    unbound_readings: int = 0


def fleet_gauges(session: Session, *, now: datetime, stale_after: timedelta) -> list[ClinicFleetGauges]:
    """Per clinic: active gateways by state, the deepest outbox, the readings kept aside (counts only)."""
    rows = session.execute(
        select(Gateway, GatewayStatusRecord)
        .outerjoin(GatewayStatusRecord, GatewayStatusRecord.gateway_id == Gateway.gateway_id)
        .where(Gateway.active.is_(True))
    ).all()
    by_clinic: dict[str, ClinicFleetGauges] = {}
    for gateway, row in rows:
        gauges = by_clinic.setdefault(gateway.clinic_id, ClinicFleetGauges(gateway.clinic_id))
        gauges.gateways[gateway_state(row, gateway, now, stale_after)] += 1
        if row is not None:
            gauges.outbox_depth_max = max(gauges.outbox_depth_max, row.outbox_depth or 0)
            gauges.unbound_readings += row.unbound_readings or 0
    return [by_clinic[c] for c in sorted(by_clinic)]


# -- unbound readings and decisions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingDecision:
    command_id: str
    action: UnboundAction
    patient_id: str | None
    measured_from: datetime
    measured_to: datetime
    decided_by: str | None
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class UnboundGroup:
    """A gateway's unbound readings of one meter (user slot), as it last reported them."""

    gateway_id: str
    meter_key: str
    user_id: int | None
    count: int
    first_measured_at: datetime
    last_measured_at: datetime
    reasons: dict[str, int]
    reported_at: datetime
    bound_patient_ids: tuple[str, ...]  # who the meter is bound to now, a likely choice
    pending: tuple[PendingDecision, ...] = field(default=())


def _groups(row: GatewayStatusRecord) -> dict[tuple[str, int | None], list[UnboundSummary]]:
    groups: dict[tuple[str, int | None], list[UnboundSummary]] = defaultdict(list)
    for item in row.unbound or []:
        summary = UnboundSummary.model_validate(item)
        groups[(summary.meter_key, summary.user_id)].append(summary)
    return groups


def _pending(
    session: Session, gateway_ids: Iterable[str]
) -> dict[tuple[str, str, int | None], list[PendingDecision]]:
    rows = session.scalars(
        select(UnboundReleaseRecord)
        .where(
            UnboundReleaseRecord.gateway_id.in_(list(gateway_ids)), UnboundReleaseRecord.applied_at.is_(None)
        )
        .order_by(UnboundReleaseRecord.decided_at)
    )
    out: dict[tuple[str, str, int | None], list[PendingDecision]] = defaultdict(list)
    for r in rows:
        out[(r.gateway_id, r.meter_key, r.device_user_id)].append(
            PendingDecision(r.command_id, UnboundAction(r.action), r.patient_id, r.measured_from,
                            r.measured_to, r.decided_by, r.decided_at)
        )  # fmt: skip
    return out


def unbound_groups(session: Session, *, clinic_id: str, gateway_id: str | None = None) -> list[UnboundGroup]:
    """The unbound readings every gateway of the clinic (or the one named) last reported, per meter
    and user slot, with the decisions still waiting for the gateway."""
    query = (
        select(GatewayStatusRecord)
        .join(Gateway, Gateway.gateway_id == GatewayStatusRecord.gateway_id)
        .where(Gateway.clinic_id == clinic_id)
    )
    if gateway_id is not None:
        query = query.where(Gateway.gateway_id == gateway_id)
    rows = list(session.scalars(query.order_by(GatewayStatusRecord.gateway_id)))
    ids = [r.gateway_id for r in rows]
    pending = _pending(session, ids)
    bound: dict[tuple[str, str, int | None], set[str]] = defaultdict(set)
    for b in _active_bindings(session, ids):
        slot = None if b.device_user_id == ANY_DEVICE_USER else b.device_user_id
        bound[(b.gateway_id, b.meter_key, slot)].add(b.patient_id)
    out = []
    for row in rows:
        for (meter_key, user_id), items in sorted(
            _groups(row).items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)
        ):
            reasons: dict[str, int] = defaultdict(int)
            for item in items:
                reasons[item.reason.value] += item.count
            patients = bound.get((row.gateway_id, meter_key, user_id), set()) | bound.get(
                (row.gateway_id, meter_key, None), set()
            )
            out.append(
                UnboundGroup(
                    gateway_id=row.gateway_id,
                    meter_key=meter_key,
                    user_id=user_id,
                    count=sum(i.count for i in items),
                    first_measured_at=min(i.first_measured_at for i in items),
                    last_measured_at=max(i.last_measured_at for i in items),
                    reasons=dict(reasons),
                    reported_at=row.reported_at,
                    bound_patient_ids=tuple(sorted(patients)),
                    pending=tuple(pending.get((row.gateway_id, meter_key, user_id), ())),
                )
            )
    return out


def decide_release(
    session: Session,
    *,
    clinic_id: str,
    gateway_id: str,
    meter_key: str,
    user_id: int | None,
    action: UnboundAction,
    patient_id: str | None,
    decided_by: str | None,
    decided_at: datetime,
    measured_from: datetime | None = None,
    measured_to: datetime | None = None,
) -> UnboundReleaseRecord:
    """Record an administrator's decision on a gateway's unbound readings of one meter (user slot):
    by default all it reported, else those measured in [`measured_from`, `measured_to`]. The
    caller audits, commits, then has the command published (vitalgate.fleet)."""
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or gateway.clinic_id != clinic_id:
        raise FleetNotFound(f"no gateway {gateway_id} in this clinic")
    row = session.get(GatewayStatusRecord, gateway_id)
    items = _groups(row).get((meter_key, user_id), []) if row is not None else []
    if not items:
        raise FleetNotFound(f"gateway {gateway_id} reports no unbound readings of that meter and user slot")
    first = min(i.first_measured_at for i in items)
    last = max(i.last_measured_at for i in items)
    start = first if measured_from is None else measured_from
    end = last if measured_to is None else measured_to
    if end < start:
        raise FleetError("measured_to is before measured_from")
    if action is UnboundAction.ADOPT:
        patient = session.get(Patient, patient_id) if patient_id is not None else None
        if patient is None or patient.clinic_id != clinic_id:
            raise FleetError("adopting needs a patient of this clinic")
        if not patient.active:
            raise FleetError(f"patient {patient_id} is discharged")
    elif patient_id is not None:
        raise FleetError("discarding names no patient")
    waiting = session.scalar(
        select(UnboundReleaseRecord.command_id).where(
            UnboundReleaseRecord.gateway_id == gateway_id,
            UnboundReleaseRecord.meter_key == meter_key,
            UnboundReleaseRecord.device_user_id.is_(None)
            if user_id is None
            else UnboundReleaseRecord.device_user_id == user_id,
            UnboundReleaseRecord.applied_at.is_(None),
        )
    )
    if waiting is not None:
        raise FleetConflict(f"decision {waiting} on these readings is still waiting for the gateway")
    record = UnboundReleaseRecord(
        command_id=f"ur_{secrets.token_hex(12)}",
        clinic_id=clinic_id,
        gateway_id=gateway_id,
        meter_key=meter_key,
        device_user_id=user_id,
        action=action.value,
        patient_id=patient_id if action is UnboundAction.ADOPT else None,
        measured_from=start,
        measured_to=end,
        readings=sum(i.count for i in items if start <= i.first_measured_at and i.last_measured_at <= end),
        decided_by=decided_by,
        decided_at=decided_at,
    )
    session.add(record)
    session.flush()
    return record


def pending_commands(session: Session, *, gateway_id: str, issued_at: datetime) -> GatewayCommands:
    """The retained `commands` payload: the gateway's decisions not yet reported carried out."""
    rows = session.scalars(
        select(UnboundReleaseRecord)
        .where(UnboundReleaseRecord.gateway_id == gateway_id, UnboundReleaseRecord.applied_at.is_(None))
        .order_by(UnboundReleaseRecord.decided_at)
        .limit(MAX_COMMANDS)
    )
    return GatewayCommands(
        gateway_id=gateway_id,
        issued_at=issued_at,
        commands=tuple(
            UnboundRelease(
                command_id=r.command_id,
                action=UnboundAction(r.action),
                meter_key=r.meter_key,
                user_id=r.device_user_id,
                measured_from=r.measured_from,
                measured_to=r.measured_to,
                patient_id=r.patient_id,
            )
            for r in rows
        ),
    )


def release_json(record: UnboundReleaseRecord) -> dict[str, Any]:
    """A decision as plain JSON values, for audit details and answers (ids and times only)."""
    return {
        "command_id": record.command_id,
        "gateway_id": record.gateway_id,
        "meter_key": record.meter_key,
        "user_id": record.device_user_id,
        "action": record.action,
        "patient_id": record.patient_id,
        "measured_from": record.measured_from.isoformat(),
        "measured_to": record.measured_to.isoformat(),
        "readings": record.readings,
    }


# -- what the operational alert rules watch -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterWatch:
    meter_key: str
    battery_percent: int | None
    patient_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GatewayWatch:
    """A gateway through which active patients are expected to measure, and what it last said.

    `silent_since`: when it was last heard from: its last status while online, its last will (or
    final status) when offline, or, for one that never reported, its first patient's binding."""

    gateway_id: str
    clinic_id: str
    patient_ids: tuple[str, ...]
    online: bool | None
    last_seen_at: datetime | None
    silent_since: datetime | None
    meters: tuple[MeterWatch, ...]


def fleet_watches(session: Session) -> list[GatewayWatch]:
    """Every active gateway with an active binding to an active patient."""
    gateways = list(
        session.scalars(select(Gateway).where(Gateway.active.is_(True)).order_by(Gateway.gateway_id))
    )
    bindings = _active_bindings(session, [g.gateway_id for g in gateways])
    by_gateway: dict[str, list[MeterBinding]] = defaultdict(list)
    for b in bindings:
        by_gateway[b.gateway_id].append(b)
    rows = {r.gateway_id: r for r in session.scalars(select(GatewayStatusRecord))}
    out = []
    for g in gateways:
        bound = by_gateway.get(g.gateway_id)
        if not bound:
            continue
        row = rows.get(g.gateway_id)
        if row is None:
            silent_since: datetime | None = max(g.created_at, min(b.bound_at for b in bound))
        elif not row.online:
            silent_since = row.offline_since or row.received_at
        else:
            silent_since = g.last_seen_at
        batteries = {
            m.meter_key: m.battery_percent
            for m in (MeterHealth.model_validate(x) for x in (row.meters if row else []))
        }
        patients_of: dict[str, set[str]] = defaultdict(set)
        for b in bound:
            patients_of[b.meter_key].add(b.patient_id)
        out.append(
            GatewayWatch(
                gateway_id=g.gateway_id,
                clinic_id=g.clinic_id,
                patient_ids=tuple(sorted({b.patient_id for b in bound})),
                online=None if row is None else row.online,
                last_seen_at=g.last_seen_at,
                silent_since=silent_since,
                meters=tuple(
                    MeterWatch(key, batteries.get(key), tuple(sorted(patients)))
                    for key, patients in sorted(patients_of.items())
                ),
            )
        )
    return out
