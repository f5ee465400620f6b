"""Enrolment: create clinics, accounts, patients, gateways and meters (used by the API, the demo,
and tests). The caller owns the transaction and commits.

Secrets (account passwords, gateway MQTT passwords) are stored only as argon2 hashes via pwdlib
(reliability.md §5.3: FastAPI docs recommend pwdlib with argon2).
"""

from __future__ import annotations

from collections.abc import Iterable

from pwdlib import PasswordHash
from sqlalchemy.orm import Session

from storage.clinic.models import (
    CareTeamMember,
    CareTeamRole,
    Clinic,
    Gateway,
    GuidelineProfile,
    Meter,
    MeterKind,
    Patient,
    User,
    UserRole,
    UserRoleGrant,
)
from vitals.readings import DeviceIdentity


def password_hasher() -> PasswordHash:
    """argon2id with pwdlib's recommended parameters."""
    return PasswordHash.recommended()


def hash_secret(secret: str, hasher: PasswordHash | None = None) -> str:
    return (hasher or password_hasher()).hash(secret)


def verify_secret(secret: str, secret_hash: str, hasher: PasswordHash | None = None) -> bool:
    return (hasher or password_hasher()).verify(secret, secret_hash)


def add_clinic(
    session: Session, *, clinic_id: str, name: str, profile: GuidelineProfile = GuidelineProfile.EU
) -> Clinic:
    clinic = Clinic(clinic_id=clinic_id, name=name, default_profile=profile)
    session.add(clinic)
    session.flush()
    return clinic


def add_user(
    session: Session,
    *,
    user_id: str,
    clinic_id: str,
    email: str,
    display_name: str,
    roles: Iterable[UserRole],
    password: str | None = None,
) -> User:
    user = User(
        user_id=user_id,
        clinic_id=clinic_id,
        email=email,
        display_name=display_name,
        password_hash=None if password is None else hash_secret(password),
        active=True,
    )
    user.roles = [UserRoleGrant(role=role) for role in roles]
    session.add(user)
    session.flush()
    return user


def enrol_patient(
    session: Session,
    *,
    patient_id: str,
    clinic_id: str,
    given_name: str,
    family_name: str,
    family_doctor_id: str | None = None,
    staff_ids: Iterable[str] = (),
) -> Patient:
    """Enrol a patient with a care team: the family doctor first, then staff in escalation order."""
    patient = Patient(
        patient_id=patient_id, clinic_id=clinic_id, given_name=given_name, family_name=family_name
    )
    members = []
    if family_doctor_id is not None:
        members.append(
            CareTeamMember(user_id=family_doctor_id, team_role=CareTeamRole.FAMILY_DOCTOR, escalation_order=0)
        )
    for order, staff_id in enumerate(staff_ids, start=len(members)):
        members.append(
            CareTeamMember(user_id=staff_id, team_role=CareTeamRole.CLINIC_STAFF, escalation_order=order)
        )
    patient.care_team = members
    session.add(patient)
    session.flush()
    return patient


def register_gateway(
    session: Session, *, gateway_id: str, clinic_id: str, mqtt_password: str, mqtt_username: str | None = None
) -> Gateway:
    """Register a gateway; its MQTT password is kept only as a hash."""
    gateway = Gateway(
        gateway_id=gateway_id,
        clinic_id=clinic_id,
        mqtt_username=mqtt_username or gateway_id,
        mqtt_credential_hash=hash_secret(mqtt_password),
        active=True,
    )
    session.add(gateway)
    session.flush()
    return gateway


def register_meter(session: Session, *, clinic_id: str, device: DeviceIdentity, kind: MeterKind) -> Meter:
    meter = Meter(
        meter_key=device.meter_key,
        clinic_id=clinic_id,
        kind=kind,
        manufacturer=device.manufacturer,
        model=device.model,
        serial_number=device.serial_number,
        address=device.address,
    )
    session.add(meter)
    session.flush()
    return meter
