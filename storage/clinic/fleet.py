"""The clinic's view of its gateways: each one's latest status report, the gateways page, and what
the operational alert rules watch (DESIGN.md, MQTT: `status`). The readings a gateway keeps aside
unattributed, and administrators' decisions on them, are in storage.clinic.unbound_readings.

Keyword-only functions over a session; the caller commits. The status
consumer (vitalgate.fleet) writes with `record_status`; the API (api.routes.admin_fleet) reads; the
operational alert rules (alerts.operations) read `fleet_watches`.

Times: `received_at`, `last_seen_at` and `offline_since` are the clinic's clock (when it heard from
the gateway); `reported_at` is the gateway's. Nothing here holds a reading's value or a name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.clinic.models import (
    REASON_LENGTH,
    Gateway,
    GatewayStatusRecord,
    MeterBinding,
    Patient,
    UnboundReleaseRecord,
    cut_to,
)
from vitals.payload import GatewayStatus, MeterHealth


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
        row.meters = kept_last_syncs(status.meters, row.meters or [])
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


def kept_last_syncs(
    reported: Sequence[MeterHealth], before: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The meters as reported, each one that reports no last sync keeping the one known before (a
    gateway that restarted without it: the meter did sync then, whatever the new report says)."""
    known = {m.meter_key: m.last_sync_at for m in (MeterHealth.model_validate(x) for x in before)}
    return [
        (
            m if m.last_sync_at is not None else m.model_copy(update={"last_sync_at": known.get(m.meter_key)})
        ).model_dump(mode="json")
        for m in reported
    ]


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


def active_bindings(session: Session, gateway_ids: Sequence[str]) -> list[MeterBinding]:
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
    for b in active_bindings(session, ids):
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
    bindings = active_bindings(session, [g.gateway_id for g in gateways])
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
