"""Patients: enrolment, their details, care teams, discharge and readmission."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic import enrolment
from storage.clinic.administration.accounts import _user
from storage.clinic.administration.clinic import _clinic
from storage.clinic.administration.common import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    Actor,
    _audit,
    _birth_date,
    _checked_id,
    _conflict,
    _invalid,
    _new_id,
    _not_found,
    _now,
    _optional,
    _text,
)
from storage.clinic.models import CareTeamMember, CareTeamRole, MeterBinding, Patient, User, UserRole


def _patient(session: Session, actor: Actor, patient_id: str, field: str = "patient_id") -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None or patient.clinic_id != actor.clinic_id:
        raise _not_found("patient", patient_id, field)
    return patient


def get_patient(session: Session, actor: Actor, patient_id: str) -> Patient:
    return _patient(session, actor, patient_id)


def list_patients(session: Session, actor: Actor, *, include_discharged: bool = True) -> list[Patient]:
    query = select(Patient).where(Patient.clinic_id == actor.clinic_id)
    if not include_discharged:
        query = query.where(Patient.active.is_(True))
    return list(session.scalars(query.order_by(Patient.family_name, Patient.given_name, Patient.patient_id)))


def _clinician(session: Session, actor: Actor, user_id: str, team_role: CareTeamRole, field: str) -> User:
    """A user of the clinic who may hold `team_role` on a care team: an active family doctor for the
    family doctor's place; a family doctor or clinic staff for a staff place."""
    user = _user(session, actor, user_id, field)
    allowed = (
        {UserRole.FAMILY_DOCTOR}
        if team_role is CareTeamRole.FAMILY_DOCTOR
        else {UserRole.FAMILY_DOCTOR, UserRole.CLINIC_STAFF}
    )
    if not user.active or not allowed & user.role_set:
        raise _invalid(
            "admin.not_clinician",
            f"user {user_id} cannot be on a care team as {team_role.value} (role or inactive account)",
            field,
        )
    return user


def enrol_patient(
    session: Session,
    actor: Actor,
    *,
    given_name: str,
    family_name: str,
    family_doctor_id: str,
    staff_ids: Sequence[str] = (),
    patient_id: str | None = None,
    date_of_birth: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> Patient:
    """Enrol a patient in the actor's clinic under a family doctor, with staff in escalation order."""
    when = _now(now)
    _clinic(session, actor)
    patient_id = _checked_id(patient_id, "patient_id") if patient_id else _new_id("p")
    if session.get(Patient, patient_id) is not None:
        raise _conflict("admin.patient_exists", f"patient {patient_id} exists already", "patient_id")
    given_name = _text(given_name, "given_name", 100)
    family_name = _text(family_name, "family_name", 100)
    born = _birth_date(date_of_birth, when.date())
    phone = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    email = _optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    _clinician(session, actor, family_doctor_id, CareTeamRole.FAMILY_DOCTOR, "family_doctor_id")
    if len(set(staff_ids)) != len(staff_ids) or family_doctor_id in staff_ids:
        raise _invalid("admin.already_on_care_team", "each member joins a care team once", "staff_ids")
    for staff_id in staff_ids:
        _clinician(session, actor, staff_id, CareTeamRole.CLINIC_STAFF, "staff_ids")
    patient = enrolment.enrol_patient(
        session,
        patient_id=patient_id,
        clinic_id=actor.clinic_id,
        given_name=given_name,
        family_name=family_name,
        family_doctor_id=family_doctor_id,
        staff_ids=staff_ids,
    )
    patient.date_of_birth, patient.phone, patient.email = born, phone, email
    patient.enrolled_at = when
    session.flush()
    _audit(
        session,
        actor,
        "enrol_patient",
        "patient",
        patient_id,
        {"family_doctor_id": family_doctor_id, "staff_ids": list(staff_ids)},
    )
    return patient


def update_patient(
    session: Session,
    actor: Actor,
    patient_id: str,
    *,
    given_name: str | None = None,
    family_name: str | None = None,
    date_of_birth: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> Patient:
    """Change the given fields (None: unchanged; "" clears an optional one). The audit entry names the
    fields that changed, never their values."""
    patient = _patient(session, actor, patient_id)
    new: dict[str, Any] = {}
    if given_name is not None:
        new["given_name"] = _text(given_name, "given_name", 100)
    if family_name is not None:
        new["family_name"] = _text(family_name, "family_name", 100)
    if date_of_birth is not None:
        new["date_of_birth"] = _birth_date(date_of_birth, _now(now).date())
    if phone is not None:
        new["phone"] = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    if email is not None:
        new["email"] = _optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    changed = sorted(column for column, value in new.items() if getattr(patient, column) != value)
    for column in changed:
        setattr(patient, column, new[column])
    session.flush()
    _audit(session, actor, "update_patient", "patient", patient_id, {"changed": changed})
    return patient


def add_care_team_member(
    session: Session, actor: Actor, patient_id: str, *, user_id: str, team_role: CareTeamRole
) -> CareTeamMember:
    """Add a member at the end of the escalation order (notified after everyone already there)."""
    patient = _patient(session, actor, patient_id)
    _clinician(session, actor, user_id, team_role, "user_id")
    if any(member.user_id == user_id for member in patient.care_team):
        raise _conflict("admin.already_on_care_team", f"user {user_id} is on this care team", "user_id")
    order = max((m.escalation_order for m in patient.care_team), default=-1) + 1
    member = CareTeamMember(user_id=user_id, team_role=team_role, escalation_order=order)
    patient.care_team.append(member)
    session.flush()
    _audit(
        session,
        actor,
        "add_care_team_member",
        "patient",
        patient_id,
        {"user_id": user_id, "team_role": team_role.value, "escalation_order": order},
    )
    return member


def remove_care_team_member(session: Session, actor: Actor, patient_id: str, *, user_id: str) -> None:
    """Take a member off the care team; a patient keeps at least one family doctor."""
    patient = _patient(session, actor, patient_id)
    member = next((m for m in patient.care_team if m.user_id == user_id), None)
    if member is None:
        raise _not_found("care team member", user_id, "user_id")
    doctors = [m for m in patient.care_team if m.team_role is CareTeamRole.FAMILY_DOCTOR]
    if member.team_role is CareTeamRole.FAMILY_DOCTOR and len(doctors) == 1:
        raise _conflict(
            "admin.care_team_needs_doctor",
            "a patient keeps a family doctor: add another before removing this one",
            "user_id",
        )
    patient.care_team.remove(member)
    session.flush()
    _audit(
        session,
        actor,
        "remove_care_team_member",
        "patient",
        patient_id,
        {"user_id": user_id, "team_role": member.team_role.value},
    )


@dataclass(frozen=True, slots=True)
class Discharge:
    patient: Patient
    ended_bindings: list[MeterBinding]

    @property
    def gateway_ids(self) -> list[str]:
        """The gateways whose configuration changed (their retained config is published again)."""
        return sorted({b.gateway_id for b in self.ended_bindings})


def discharge_patient(
    session: Session, actor: Actor, patient_id: str, *, now: datetime | None = None
) -> Discharge:
    """Discharge a patient: no longer on any panel, no meter bound to them from now on. Every reading,
    alert and audit entry of theirs is kept. Their active meter bindings end now."""
    when = _now(now)
    patient = _patient(session, actor, patient_id)
    if not patient.active:
        raise _conflict("admin.patient_discharged", f"patient {patient_id} is discharged", "patient_id")
    ended = list(
        session.scalars(
            select(MeterBinding).where(MeterBinding.patient_id == patient_id, MeterBinding.active.is_(True))
        )
    )
    for binding in ended:
        binding.active = False
        binding.unbound_at = max(when, binding.bound_at)
    patient.active = False
    patient.discharged_at = when
    session.flush()
    _audit(
        session,
        actor,
        "discharge_patient",
        "patient",
        patient_id,
        {"bindings_ended": [b.binding_id for b in ended]},
    )
    return Discharge(patient, ended)


def readmit_patient(session: Session, actor: Actor, patient_id: str) -> Patient:
    """Re-admit a discharged patient, with their care team and data as they were (meters are bound
    again separately)."""
    patient = _patient(session, actor, patient_id)
    if patient.active:
        raise _conflict("admin.patient_active", f"patient {patient_id} is not discharged", "patient_id")
    discharged_at = patient.discharged_at
    patient.active = True
    patient.discharged_at = None
    session.flush()
    _audit(
        session,
        actor,
        "readmit_patient",
        "patient",
        patient_id,
        {"discharged_at": discharged_at.isoformat() if discharged_at else None},
    )
    return patient
