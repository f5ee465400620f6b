"""The readings a gateway keeps aside unattributed (its meter was bound to nobody when it measured)
and administrators' decisions on them: the groups awaiting a decision, adopting them for a patient
or discarding them, and the commands that carry each decision to the gateway (DESIGN.md, MQTT:
`status`, `commands`).

Keyword-only functions over a session; the caller commits (and audits). Nothing here holds a
reading's value or a name."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic.fleet import active_bindings
from storage.clinic.models import ANY_DEVICE_USER, Gateway, GatewayStatusRecord, Patient, UnboundReleaseRecord
from vitals.payload import MAX_COMMANDS, GatewayCommands, UnboundAction, UnboundRelease, UnboundSummary


class FleetError(ValueError):
    """A decision that cannot be taken; the message says why (ids only)."""


class FleetNotFound(FleetError):
    """No such gateway in the caller's clinic, or no unbound readings of that meter on it."""


class FleetConflict(FleetError):
    """A decision on the same readings is still waiting for the gateway."""


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
    for b in active_bindings(session, ids):
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
