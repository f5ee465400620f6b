"""Patients: enrolment, their details, care teams, discharge and readmission."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic import enrolment
from storage.clinic.administration.accounts import own_user
from storage.clinic.administration.clinic import own_clinic
from storage.clinic.administration.common import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    Actor,
    audit_change,
    change_time,
    checked_birth_date,
    checked_id,
    checked_optional,
    checked_text,
    conflict,
    invalid,
    new_id,
    not_found,
)
from storage.clinic.models import CareTeamMember, CareTeamRole, MeterBinding, Patient, User, UserRole


def own_patient(session: Session, actor: Actor, patient_id: str, field: str = "patient_id") -> Patient:
    """A patient of the actor's clinic, or `admin.not_found`."""
    patient = session.get(Patient, patient_id)
    if patient is None or patient.clinic_id != actor.clinic_id:
        raise not_found("patient", patient_id, field)
    return patient


def get_patient(session: Session, actor: Actor, patient_id: str) -> Patient:
    return own_patient(session, actor, patient_id)


def list_patients(session: Session, actor: Actor, *, include_discharged: bool = True) -> list[Patient]:
    query = select(Patient).where(Patient.clinic_id == actor.clinic_id)
    if not include_discharged:
        query = query.where(Patient.active.is_(True))
    return list(session.scalars(query.order_by(Patient.family_name, Patient.given_name, Patient.patient_id)))


def _clinician(session: Session, actor: Actor, user_id: str, team_role: CareTeamRole, field: str) -> User:
    """A user of the clinic who may hold `team_role` on a care team: an active family doctor for the
    family doctor's place; a family doctor or clinic staff for a staff place."""
    user = own_user(session, actor, user_id, field)
    allowed = (
        {UserRole.FAMILY_DOCTOR}
        if team_role is CareTeamRole.FAMILY_DOCTOR
        else {UserRole.FAMILY_DOCTOR, UserRole.CLINIC_STAFF}
    )
    if not user.active or not allowed & user.role_set:
        raise invalid(
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
    when = change_time(now)
    own_clinic(session, actor)
    patient_id = checked_id(patient_id, "patient_id") if patient_id else new_id("p")
    if session.get(Patient, patient_id) is not None:
        raise conflict("admin.patient_exists", f"patient {patient_id} exists already", "patient_id")
    given_name = checked_text(given_name, "given_name", 100)
    family_name = checked_text(family_name, "family_name", 100)
    born = checked_birth_date(date_of_birth, when.date())
    phone = checked_optional(phone, "phone", PHONE_PATTERN, "a phone number")
    email = checked_optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    _clinician(session, actor, family_doctor_id, CareTeamRole.FAMILY_DOCTOR, "family_doctor_id")
    if len(set(staff_ids)) != len(staff_ids) or family_doctor_id in staff_ids:
        raise invalid("admin.already_on_care_team", "each member joins a care team once", "staff_ids")
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
    audit_change(
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
    patient = own_patient(session, actor, patient_id)
    new: dict[str, Any] = {}
    if given_name is not None:
        new["given_name"] = checked_text(given_name, "given_name", 100)
    if family_name is not None:
        new["family_name"] = checked_text(family_name, "family_name", 100)
    if date_of_birth is not None:
        new["date_of_birth"] = checked_birth_date(date_of_birth, change_time(now).date())
    if phone is not None:
        new["phone"] = checked_optional(phone, "phone", PHONE_PATTERN, "a phone number")
    if email is not None:
        new["email"] = checked_optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    changed = sorted(column for column, value in new.items() if getattr(patient, column) != value)
    for column in changed:
        setattr(patient, column, new[column])
    session.flush()
    audit_change(session, actor, "update_patient", "patient", patient_id, {"changed": changed})
    return patient


def add_care_team_member(
    session: Session, actor: Actor, patient_id: str, *, user_id: str, team_role: CareTeamRole
) -> CareTeamMember:
    """Add a member at the end of the escalation order (notified after everyone already there)."""
    patient = own_patient(session, actor, patient_id)
    _clinician(session, actor, user_id, team_role, "user_id")
    if any(member.user_id == user_id for member in patient.care_team):
        raise conflict("admin.already_on_care_team", f"user {user_id} is on this care team", "user_id")
    order = max((m.escalation_order for m in patient.care_team), default=-1) + 1
    member = CareTeamMember(user_id=user_id, team_role=team_role, escalation_order=order)
    patient.care_team.append(member)
    session.flush()
    audit_change(
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
    patient = own_patient(session, actor, patient_id)
    member = next((m for m in patient.care_team if m.user_id == user_id), None)
    if member is None:
        raise not_found("care team member", user_id, "user_id")
    doctors = [m for m in patient.care_team if m.team_role is CareTeamRole.FAMILY_DOCTOR]
    if member.team_role is CareTeamRole.FAMILY_DOCTOR and len(doctors) == 1:
        raise conflict(
            "admin.care_team_needs_doctor",
            "a patient keeps a family doctor: add another before removing this one",
            "user_id",
        )
    patient.care_team.remove(member)
    session.flush()
    audit_change(
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
    when = change_time(now)
    patient = own_patient(session, actor, patient_id)
    if not patient.active:
        raise conflict("admin.patient_discharged", f"patient {patient_id} is discharged", "patient_id")
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
    audit_change(
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
    patient = own_patient(session, actor, patient_id)
    if patient.active:
        raise conflict("admin.patient_active", f"patient {patient_id} is not discharged", "patient_id")
    discharged_at = patient.discharged_at
    patient.active = True
    patient.discharged_at = None
    session.flush()
    audit_change(
        session,
        actor,
        "readmit_patient",
        "patient",
        patient_id,
        {"discharged_at": discharged_at.isoformat() if discharged_at else None},
    )
    return patient
