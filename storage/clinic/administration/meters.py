"""Meters and their bindings: registering a meter, binding it (or one cuff user slot) to a patient,
unbinding it and moving it to another patient."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic import enrolment, repository
from storage.clinic.administration.clinic import own_clinic
from storage.clinic.administration.common import (
    Actor,
    audit_change,
    change_time,
    conflict,
    invalid,
    not_found,
)
from storage.clinic.administration.gateways import own_gateway
from storage.clinic.administration.patients import own_patient
from storage.clinic.models import ANY_DEVICE_USER, Meter, MeterBinding, MeterKind
from vitals.readings import DeviceIdentity

# Cuff user slots: the Blood Pressure Measurement "User ID" field, 0-254; 0xFF means "unknown user"
# and stands for "every slot" in a binding (ble-health-profiles.md §2.2, field 7).
MAX_DEVICE_USER: Final = ANY_DEVICE_USER - 1


def own_meter(session: Session, actor: Actor, meter_key: str, field: str = "meter_key") -> Meter:
    """A meter of the actor's clinic, or `admin.not_found`."""
    meter = session.get(Meter, meter_key)
    if meter is None or meter.clinic_id != actor.clinic_id:
        raise not_found("meter", meter_key, field)
    return meter


def list_meters(session: Session, actor: Actor) -> list[Meter]:
    return list(
        session.scalars(select(Meter).where(Meter.clinic_id == actor.clinic_id).order_by(Meter.meter_key))
    )


def list_bindings(
    session: Session, actor: Actor, *, active_only: bool = False, patient_id: str | None = None
) -> list[MeterBinding]:
    """The clinic's bindings (through its meters), newest first."""
    query = (
        select(MeterBinding)
        .join(Meter, Meter.meter_key == MeterBinding.meter_key)
        .where(Meter.clinic_id == actor.clinic_id)
    )
    if active_only:
        query = query.where(MeterBinding.active.is_(True))
    if patient_id is not None:
        query = query.where(MeterBinding.patient_id == patient_id)
    return list(session.scalars(query.order_by(MeterBinding.binding_id.desc())))


def register_meter(
    session: Session,
    actor: Actor,
    *,
    kind: MeterKind,
    manufacturer: str,
    model: str,
    serial_number: str | None = None,
    address: str | None = None,
) -> Meter:
    """Register a meter by its Device Information (serial number, or BLE address when it reports none)."""
    own_clinic(session, actor)
    try:
        device = DeviceIdentity(
            manufacturer=manufacturer.strip(),
            model=model.strip(),
            serial_number=(serial_number or "").strip() or None,
            address=(address or "").strip() or None,
        )
    except ValueError as exc:
        raise invalid(
            "admin.invalid_meter",
            "a meter needs a manufacturer and model (1-64 characters) and a serial number or address",
            "serial_number",
        ) from exc
    if session.get(Meter, device.meter_key) is not None:
        raise conflict(
            "admin.meter_exists", f"meter {device.meter_key} is registered already", "serial_number"
        )
    meter = enrolment.register_meter(session, clinic_id=actor.clinic_id, device=device, kind=kind)
    audit_change(session, actor, "register_meter", "meter", meter.meter_key, {"kind": kind.value})
    return meter


def _slot(meter: Meter, device_user_id: int | None) -> int:
    if device_user_id is None:
        return ANY_DEVICE_USER
    if meter.kind is not MeterKind.BLOOD_PRESSURE:
        raise invalid(
            "admin.slot_not_supported", "only blood pressure cuffs have user slots", "device_user_id"
        )
    if not 0 <= device_user_id <= MAX_DEVICE_USER:
        raise invalid("admin.invalid_slot", f"a cuff user slot is 0 to {MAX_DEVICE_USER}", "device_user_id")
    return device_user_id


def _binding(session: Session, actor: Actor, binding_id: int) -> MeterBinding:
    binding = session.get(MeterBinding, binding_id)
    if binding is None:
        raise not_found("binding", str(binding_id), "binding_id")
    own_meter(session, actor, binding.meter_key)  # tenancy: through the meter's clinic
    return binding


def _binding_details(binding: MeterBinding, **extra: Any) -> dict[str, Any]:
    return {
        "binding_id": binding.binding_id,
        "gateway_id": binding.gateway_id,
        "patient_id": binding.patient_id,
        "device_user_id": None if binding.device_user_id == ANY_DEVICE_USER else binding.device_user_id,
        "bound_at": binding.bound_at.isoformat(),
        "prior_memory_belongs": binding.prior_memory_belongs,
        **extra,
    }


def bind_meter(
    session: Session,
    actor: Actor,
    *,
    meter_key: str,
    gateway_id: str,
    patient_id: str,
    device_user_id: int | None = None,
    prior_memory_belongs: bool = False,
    now: datetime | None = None,
) -> MeterBinding:
    """Bind a meter (or one user slot of a cuff) to a patient through a gateway, from now on.

    `prior_memory_belongs`: whether the readings the meter already holds, measured before now, are
    this patient's. No by default: a reused or loaner meter's memory is its earlier owner's, and a
    glucose meter sends its whole memory at the first sync. Refused when the meter (slot) is bound
    already, to anyone: unbind or move it first."""
    when = change_time(now)
    meter = own_meter(session, actor, meter_key)
    gateway = own_gateway(session, actor, gateway_id)
    patient = own_patient(session, actor, patient_id)
    slot = _slot(meter, device_user_id)
    if not gateway.active:
        raise conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    if not patient.active:
        raise conflict("admin.patient_discharged", f"patient {patient_id} is discharged", "patient_id")
    for held in session.scalars(
        select(MeterBinding).where(MeterBinding.meter_key == meter_key, MeterBinding.active.is_(True))
    ):
        if ANY_DEVICE_USER in (held.device_user_id, slot) or held.device_user_id == slot:
            raise conflict(
                "admin.meter_already_bound",
                f"meter {meter_key} is bound already (binding {held.binding_id}, patient {held.patient_id});"
                " unbind or move it first",
                "meter_key",
            )
    binding = repository.bind_meter(
        session,
        gateway_id=gateway_id,
        meter_key=meter_key,
        patient_id=patient_id,
        device_user_id=None if slot == ANY_DEVICE_USER else slot,
        bound_by=actor.user_id,
        at=when,
        prior_memory_belongs=prior_memory_belongs,
    )
    audit_change(session, actor, "bind_meter", "meter", meter_key, _binding_details(binding))
    return binding


def unbind_meter(
    session: Session,
    actor: Actor,
    *,
    binding_id: int,
    unbound_at: datetime | None = None,
    now: datetime | None = None,
    moved: bool = False,
) -> MeterBinding:
    """End a binding at `unbound_at` (default now; not before it began, not in the future). Readings
    measured before then stay the patient's; readings measured after belong to nobody."""
    when = change_time(now)
    binding = _binding(session, actor, binding_id)
    if not binding.active:
        raise conflict("admin.binding_ended", f"binding {binding_id} has ended already", "binding_id")
    end = when if unbound_at is None else change_time(unbound_at)
    if end < binding.bound_at:
        raise invalid(
            "admin.unbind_before_bind",
            f"the unbind time is before the meter was bound ({binding.bound_at.isoformat()})",
            "unbound_at",
        )
    if end > when:
        raise invalid("admin.time_in_future", "the unbind time is in the future", "unbound_at")
    binding.active = False
    binding.unbound_at = end
    session.flush()
    details = _binding_details(binding, unbound_at=end.isoformat())
    if moved:
        details["moved"] = True
    audit_change(session, actor, "unbind_meter", "meter", binding.meter_key, details)
    return binding


def move_meter(
    session: Session,
    actor: Actor,
    *,
    binding_id: int,
    patient_id: str,
    gateway_id: str | None = None,
    device_user_id: int | None = None,
    prior_memory_belongs: bool = False,
    now: datetime | None = None,
) -> tuple[MeterBinding, MeterBinding]:
    """Move a bound meter (slot) to another patient, and gateway when given: the binding ends now and
    a new one begins now, in one transaction. Returns (ended, new)."""
    when = change_time(now)
    old = _binding(session, actor, binding_id)
    if old.active and old.patient_id == patient_id and (gateway_id or old.gateway_id) == old.gateway_id:
        raise conflict(
            "admin.meter_already_bound", f"binding {binding_id} is this patient's already", "patient_id"
        )
    ended = unbind_meter(session, actor, binding_id=binding_id, now=when, moved=True)
    new = bind_meter(
        session,
        actor,
        meter_key=ended.meter_key,
        gateway_id=gateway_id or ended.gateway_id,
        patient_id=patient_id,
        device_user_id=device_user_id,
        prior_memory_belongs=prior_memory_belongs,
        now=when,
    )
    return ended, new
