"""The clinic's patients, for its administrators: enrolment, details, care team, discharge, re-admission.

- GET    /api/v1/admin/patients                        every patient, discharged ones too (audited, a count)
- GET    /api/v1/admin/patients/{patient_id}           one patient with their care team (audited)
- POST   /api/v1/admin/patients                        enrol under a family doctor
- PATCH  /api/v1/admin/patients/{patient_id}           names, birth date, phone, e-mail address
- POST   /api/v1/admin/patients/{patient_id}/care-team           add a member (end of escalation order)
- DELETE /api/v1/admin/patients/{patient_id}/care-team/{user_id} remove one (a family doctor stays)
- POST   /api/v1/admin/patients/{patient_id}/discharge  off every panel, meters unbound, data kept
- POST   /api/v1/admin/patients/{patient_id}/readmit

A patient is enrolled into the administrator's own clinic only: the clinic is never taken from the
request. Audit entries name the fields that changed, never their values.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import Services
from api.limits import OPAQUE_ID_MAX, BoundedDate
from api.routes.admin_common import ADMIN_PREFIX, AdminActor, Audited, run_change, run_read
from api.routes.admin_gateways import ConfigDelivery, publish_configs
from storage.clinic.administration import patients as admin
from storage.clinic.models import CareTeamRole, Patient

router = APIRouter(prefix=f"{ADMIN_PREFIX}/patients", tags=["admin"])

OPAQUE_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
PatientId = Annotated[str, Path(pattern=OPAQUE_ID)]


class CareTeamMemberOut(BaseModel):
    user_id: str
    display_name: str
    team_role: CareTeamRole
    escalation_order: int = Field(description="0 is notified first")


class EnrolledPatientOut(BaseModel):
    patient_id: str
    given_name: str
    family_name: str
    date_of_birth: date | None
    phone: str | None
    email: str | None
    active: bool = Field(description="false: discharged (readings and alerts kept)")
    enrolled_at: datetime
    discharged_at: datetime | None
    care_team: list[CareTeamMemberOut]


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    family_doctor_id: str = Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)
    staff_ids: list[Annotated[str, Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)]] = Field(
        default_factory=list, description="clinic staff, in escalation order"
    )
    date_of_birth: BoundedDate | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    patient_id: str | None = Field(
        default=None,
        pattern=OPAQUE_ID,
        max_length=OPAQUE_ID_MAX,
        description="opaque id used outside the clinic database; null: one is chosen",
    )


class PatientUpdateIn(BaseModel):
    """The fields to change; left out (or null): unchanged; an empty phone or e-mail clears it."""

    model_config = ConfigDict(extra="forbid")

    given_name: str | None = Field(default=None, min_length=1, max_length=100)
    family_name: str | None = Field(default=None, min_length=1, max_length=100)
    date_of_birth: BoundedDate | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)


class CareTeamMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=OPAQUE_ID, max_length=OPAQUE_ID_MAX)
    team_role: CareTeamRole


class DischargeOut(BaseModel):
    patient: EnrolledPatientOut
    bindings_ended: list[int] = Field(description="the meter bindings that ended with the discharge")
    gateway_config: ConfigDelivery


def patient_out(patient: Patient) -> EnrolledPatientOut:
    return EnrolledPatientOut(
        patient_id=patient.patient_id,
        given_name=patient.given_name,
        family_name=patient.family_name,
        date_of_birth=date.fromisoformat(patient.date_of_birth) if patient.date_of_birth else None,
        phone=patient.phone,
        email=patient.email,
        active=patient.active,
        enrolled_at=patient.enrolled_at,
        discharged_at=patient.discharged_at,
        care_team=[
            CareTeamMemberOut(
                user_id=m.user_id,
                display_name=m.user.display_name,
                team_role=m.team_role,
                escalation_order=m.escalation_order,
            )
            for m in patient.care_team
        ],
    )


@router.get("")
async def list_patients(
    actor: AdminActor,
    services: Services,
    include_discharged: Annotated[bool, Query(description="false: active patients only")] = True,
) -> list[EnrolledPatientOut]:
    return await run_read(
        services,
        actor,
        lambda s: [
            patient_out(p) for p in admin.list_patients(s, actor, include_discharged=include_discharged)
        ],
        audited_as="read_admin_patients",
        count=len,
    )


@router.get("/{patient_id}")
async def read_patient(patient_id: PatientId, actor: AdminActor, services: Services) -> EnrolledPatientOut:
    def read(session: Session) -> EnrolledPatientOut:
        return patient_out(admin.get_patient(session, actor, patient_id))

    return await run_read(services, actor, read, audited_as="read_admin_patient")


@router.post("", status_code=status.HTTP_201_CREATED)
async def enrol_patient(body: PatientIn, actor: AdminActor, services: Services) -> EnrolledPatientOut:
    def change(session: Session) -> EnrolledPatientOut:
        return patient_out(
            admin.enrol_patient(
                session,
                actor,
                patient_id=body.patient_id,
                given_name=body.given_name,
                family_name=body.family_name,
                family_doctor_id=body.family_doctor_id,
                staff_ids=body.staff_ids,
                date_of_birth=body.date_of_birth.isoformat() if body.date_of_birth else None,
                phone=body.phone,
                email=body.email,
            )
        )

    return await run_change(services, actor, Audited("enrol_patient", "patient", body.patient_id), change)


@router.patch("/{patient_id}")
async def update_patient(
    patient_id: PatientId, body: PatientUpdateIn, actor: AdminActor, services: Services
) -> EnrolledPatientOut:
    def change(session: Session) -> EnrolledPatientOut:
        return patient_out(
            admin.update_patient(
                session,
                actor,
                patient_id,
                given_name=body.given_name,
                family_name=body.family_name,
                date_of_birth=body.date_of_birth.isoformat() if body.date_of_birth else None,
                phone=body.phone,
                email=body.email,
            )
        )

    return await run_change(services, actor, Audited("update_patient", "patient", patient_id), change)


@router.post("/{patient_id}/care-team", status_code=status.HTTP_201_CREATED)
async def add_care_team_member(
    patient_id: PatientId, body: CareTeamMemberIn, actor: AdminActor, services: Services
) -> EnrolledPatientOut:
    def change(session: Session) -> EnrolledPatientOut:
        admin.add_care_team_member(session, actor, patient_id, user_id=body.user_id, team_role=body.team_role)
        return patient_out(admin.get_patient(session, actor, patient_id))

    return await run_change(services, actor, Audited("add_care_team_member", "patient", patient_id), change)


@router.delete("/{patient_id}/care-team/{user_id}")
async def remove_care_team_member(
    patient_id: PatientId,
    user_id: Annotated[str, Path(pattern=OPAQUE_ID)],
    actor: AdminActor,
    services: Services,
) -> EnrolledPatientOut:
    def change(session: Session) -> EnrolledPatientOut:
        admin.remove_care_team_member(session, actor, patient_id, user_id=user_id)
        return patient_out(admin.get_patient(session, actor, patient_id))

    return await run_change(
        services, actor, Audited("remove_care_team_member", "patient", patient_id), change
    )


@router.post("/{patient_id}/discharge")
async def discharge_patient(patient_id: PatientId, actor: AdminActor, services: Services) -> DischargeOut:
    def change(session: Session) -> tuple[EnrolledPatientOut, list[int], list[str]]:
        discharge = admin.discharge_patient(session, actor, patient_id)
        return (
            patient_out(discharge.patient),
            [b.binding_id for b in discharge.ended_bindings],
            discharge.gateway_ids,
        )

    patient, ended, gateway_ids = await run_change(
        services, actor, Audited("discharge_patient", "patient", patient_id), change
    )
    delivery = await publish_configs(services, gateway_ids)
    return DischargeOut(patient=patient, bindings_ended=ended, gateway_config=delivery)


@router.post("/{patient_id}/readmit")
async def readmit_patient(patient_id: PatientId, actor: AdminActor, services: Services) -> EnrolledPatientOut:
    def change(session: Session) -> EnrolledPatientOut:
        return patient_out(admin.readmit_patient(session, actor, patient_id))

    return await run_change(services, actor, Audited("readmit_patient", "patient", patient_id), change)
