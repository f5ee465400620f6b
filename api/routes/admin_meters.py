"""The clinic's meters and their bindings to patients, for its administrators.

- GET  /api/v1/admin/meters                              the clinic's meters, each with its active bindings
- POST /api/v1/admin/meters                              register one (Device Information: serial or address)
- GET  /api/v1/admin/bindings                            bindings, newest first (active only, one patient)
- POST /api/v1/admin/bindings                            bind a meter (cuff slot) to a patient via a gateway
- POST /api/v1/admin/bindings/{binding_id}/unbind        end it now, or at a given past time
- POST /api/v1/admin/bindings/{binding_id}/move          end it and bind the meter to another patient

A binding holds from `bound_at` (now, when it is made) to `unbound_at`: a reading measured outside
that interval is never the patient's. When binding, the administrator says whether the readings the
meter already holds (measured before now) are this patient's: `prior_memory_belongs`, false unless
they say so, since a reused or loaner meter's memory is its earlier owner's and a glucose meter sends
its whole memory at its first sync. The choice is in the audit entry. A meter bound already (to
anyone, in an overlapping slot) is refused with `admin.meter_already_bound`: unbind or move it.
Each change publishes the gateway's configuration (`gateway_config` says whether it went out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import Services
from api.limits import OPAQUE_ID_MAX, BoundedDatetime
from api.routes.admin_common import ADMIN_PREFIX, AdminActor, Audited, run_change, run_read
from api.routes.admin_gateways import ConfigDelivery, publish_configs
from storage.clinic.administration import meters as admin
from storage.clinic.models import ANY_DEVICE_USER, Meter, MeterBinding, MeterKind

router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"])

OPAQUE_ID = r"^[A-Za-z0-9_-]{1,64}$"
BindingId = Annotated[int, Path(ge=1)]


class BindingOut(BaseModel):
    binding_id: int
    meter_key: str
    gateway_id: str
    patient_id: str
    device_user_id: int | None = Field(description="the cuff's user slot; null: the whole meter")
    active: bool
    bound_at: datetime
    unbound_at: datetime | None
    prior_memory_belongs: bool = Field(description="readings measured before bound_at are the patient's too")
    bound_by: str | None


class RegisteredMeterOut(BaseModel):
    meter_key: str
    kind: MeterKind
    manufacturer: str
    model: str
    serial_number: str | None
    address: str | None
    registered_at: datetime
    active_bindings: list[BindingOut]


class MeterIn(BaseModel):
    """A meter as its Device Information service describes it; the BLE address only when it reports
    no serial number."""

    model_config = ConfigDict(extra="forbid")

    kind: MeterKind
    manufacturer: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    serial_number: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=64)


class BindIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meter_key: str = Field(min_length=1, max_length=200)
    gateway_id: str = Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)
    patient_id: str = Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)
    device_user_id: int | None = Field(
        default=None, ge=0, le=admin.MAX_DEVICE_USER, description="a cuff's user slot; null: the whole meter"
    )
    prior_memory_belongs: bool = Field(
        default=False, description="the readings the meter already holds are this patient's (default no)"
    )


class UnbindIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unbound_at: BoundedDatetime | None = Field(
        default=None, description="when the patient stopped using it; null: now. Not before bound_at."
    )


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)
    gateway_id: str | None = Field(
        default=None, pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX, description="null: the same gateway"
    )
    device_user_id: int | None = Field(default=None, ge=0, le=admin.MAX_DEVICE_USER)
    prior_memory_belongs: bool = False


class BindingChange(BaseModel):
    binding: BindingOut
    ended: BindingOut | None = Field(default=None, description="the binding a move ended")
    gateway_config: ConfigDelivery


def binding_out(binding: MeterBinding) -> BindingOut:
    return BindingOut(
        binding_id=binding.binding_id,
        meter_key=binding.meter_key,
        gateway_id=binding.gateway_id,
        patient_id=binding.patient_id,
        device_user_id=None if binding.device_user_id == ANY_DEVICE_USER else binding.device_user_id,
        active=binding.active,
        bound_at=binding.bound_at,
        unbound_at=binding.unbound_at,
        prior_memory_belongs=binding.prior_memory_belongs,
        bound_by=binding.bound_by,
    )


def meter_out(meter: Meter, bindings: list[MeterBinding]) -> RegisteredMeterOut:
    return RegisteredMeterOut(
        meter_key=meter.meter_key,
        kind=meter.kind,
        manufacturer=meter.manufacturer,
        model=meter.model,
        serial_number=meter.serial_number,
        address=meter.address,
        registered_at=meter.registered_at,
        active_bindings=[binding_out(b) for b in bindings if b.meter_key == meter.meter_key],
    )


@router.get("/meters")
async def list_meters(actor: AdminActor, services: Services) -> list[RegisteredMeterOut]:
    def read(session: Session) -> list[RegisteredMeterOut]:
        bindings = admin.list_bindings(session, actor, active_only=True)
        return [meter_out(m, bindings) for m in admin.list_meters(session, actor)]

    return await run_read(services, actor, read)


@router.post("/meters", status_code=status.HTTP_201_CREATED)
async def register_meter(body: MeterIn, actor: AdminActor, services: Services) -> RegisteredMeterOut:
    def change(session: Session) -> RegisteredMeterOut:
        meter = admin.register_meter(
            session,
            actor,
            kind=body.kind,
            manufacturer=body.manufacturer,
            model=body.model,
            serial_number=body.serial_number,
            address=body.address,
        )
        return meter_out(meter, [])

    return await run_change(services, actor, Audited("register_meter", "meter"), change)


@router.get("/bindings")
async def list_bindings(
    actor: AdminActor,
    services: Services,
    active_only: bool = False,
    patient_id: Annotated[str | None, Query(pattern=OPAQUE_ID)] = None,
) -> list[BindingOut]:
    def read(session: Session) -> list[BindingOut]:
        return [
            binding_out(b)
            for b in admin.list_bindings(session, actor, active_only=active_only, patient_id=patient_id)
        ]

    return await run_read(services, actor, read)


@router.post("/bindings", status_code=status.HTTP_201_CREATED)
async def bind_meter(body: BindIn, actor: AdminActor, services: Services) -> BindingChange:
    def change(session: Session) -> BindingOut:
        return binding_out(
            admin.bind_meter(
                session,
                actor,
                meter_key=body.meter_key,
                gateway_id=body.gateway_id,
                patient_id=body.patient_id,
                device_user_id=body.device_user_id,
                prior_memory_belongs=body.prior_memory_belongs,
            )
        )

    binding = await run_change(services, actor, Audited("bind_meter", "meter", body.meter_key), change)
    delivery = await publish_configs(services, [binding.gateway_id])
    return BindingChange(binding=binding, gateway_config=delivery)


@router.post("/bindings/{binding_id}/unbind")
async def unbind_meter(
    binding_id: BindingId, body: UnbindIn, actor: AdminActor, services: Services
) -> BindingChange:
    def change(session: Session) -> BindingOut:
        return binding_out(
            admin.unbind_meter(session, actor, binding_id=binding_id, unbound_at=body.unbound_at)
        )

    binding = await run_change(services, actor, Audited("unbind_meter", "binding", str(binding_id)), change)
    delivery = await publish_configs(services, [binding.gateway_id])
    return BindingChange(binding=binding, gateway_config=delivery)


@router.post("/bindings/{binding_id}/move")
async def move_meter(
    binding_id: BindingId, body: MoveIn, actor: AdminActor, services: Services
) -> BindingChange:
    def change(session: Session) -> tuple[BindingOut, BindingOut]:
        ended, new = admin.move_meter(
            session,
            actor,
            binding_id=binding_id,
            patient_id=body.patient_id,
            gateway_id=body.gateway_id,
            device_user_id=body.device_user_id,
            prior_memory_belongs=body.prior_memory_belongs,
        )
        return binding_out(ended), binding_out(new)

    ended, new = await run_change(services, actor, Audited("move_meter", "binding", str(binding_id)), change)
    delivery = await publish_configs(services, sorted({ended.gateway_id, new.gateway_id}))
    return BindingChange(binding=new, ended=ended, gateway_config=delivery)
