"""Clinic administration: enrol clinics, users, patients and gateways, bind meters to patients, and
publish each gateway's bindings on its retained `config` topic (DESIGN.md, MQTT).

Used by `vitalgate admin` and by the demo. Names and contact details go into the clinic database
only; everything that leaves it (topics, payloads, logs) carries opaque ids.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import hash_password
from storage.clinic.models import (
    ANY_DEVICE_USER,
    CareTeamMember,
    CareTeamRole,
    Clinic,
    Gateway,
    GuidelineProfile,
    Meter,
    MeterBinding,
    MeterKind,
    Patient,
    User,
    UserRole,
    UserRoleGrant,
)
from vitals.payload import GatewayConfig
from vitals.payload import MeterBinding as MeterBindingPayload
from vitals.readings import DeviceIdentity
from vitals.topics import config_topic

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class AdminError(ValueError):
    """An administrative request that cannot be carried out; the message says why (ids only)."""


def add_clinic(
    session: Session, clinic_id: str, name: str, *, profile: GuidelineProfile, timezone: str = "UTC"
) -> Clinic:
    if session.get(Clinic, clinic_id) is not None:
        raise AdminError(f"clinic {clinic_id} exists already")
    clinic = Clinic(clinic_id=clinic_id, name=name, default_profile=profile, timezone=timezone)
    session.add(clinic)
    return clinic


def add_user(
    session: Session,
    *,
    clinic_id: str,
    user_id: str,
    email: str,
    display_name: str,
    roles: Iterable[UserRole],
    password: str | None,
) -> User:
    if session.get(Clinic, clinic_id) is None:
        raise AdminError(f"no clinic {clinic_id}")
    if session.get(User, user_id) is not None:
        raise AdminError(f"user {user_id} exists already")
    user = User(
        user_id=user_id,
        clinic_id=clinic_id,
        email=email.strip().lower(),
        display_name=display_name,
        password_hash=hash_password(password) if password else None,
        roles=[UserRoleGrant(role=r) for r in set(roles)],
    )
    session.add(user)
    return user


def add_patient(
    session: Session,
    *,
    clinic_id: str,
    patient_id: str,
    given_name: str,
    family_name: str,
    family_doctor_id: str,
    staff_ids: Iterable[str] = (),
) -> Patient:
    if session.get(Patient, patient_id) is not None:
        raise AdminError(f"patient {patient_id} exists already")
    members = [
        CareTeamMember(user_id=family_doctor_id, team_role=CareTeamRole.FAMILY_DOCTOR, escalation_order=0)
    ]
    members += [
        CareTeamMember(user_id=staff_id, team_role=CareTeamRole.CLINIC_STAFF, escalation_order=order)
        for order, staff_id in enumerate(staff_ids, start=1)
    ]
    for member in members:
        user = session.get(User, member.user_id)
        if user is None or user.clinic_id != clinic_id:
            raise AdminError(f"no user {member.user_id} in clinic {clinic_id}")
    patient = Patient(
        patient_id=patient_id,
        clinic_id=clinic_id,
        given_name=given_name,
        family_name=family_name,
        care_team=members,
    )
    session.add(patient)
    return patient


def add_gateway(session: Session, *, clinic_id: str, gateway_id: str) -> str:
    """Register a gateway and return its new MQTT password (shown once; only its hash is kept)."""
    if session.get(Gateway, gateway_id) is not None:
        raise AdminError(f"gateway {gateway_id} exists already")
    password = secrets.token_urlsafe(24)
    session.add(
        Gateway(
            gateway_id=gateway_id,
            clinic_id=clinic_id,
            mqtt_username=gateway_id,
            mqtt_credential_hash=hash_password(password),
        )
    )
    return password


def bind_meter(
    session: Session,
    *,
    gateway_id: str,
    device: DeviceIdentity,
    kind: MeterKind,
    patient_id: str,
    device_user_id: int | None = None,
    bound_by: str | None = None,
) -> MeterBinding:
    gateway = session.get(Gateway, gateway_id)
    patient = session.get(Patient, patient_id)
    if gateway is None:
        raise AdminError(f"no gateway {gateway_id}")
    if patient is None or patient.clinic_id != gateway.clinic_id:
        raise AdminError(f"no patient {patient_id} in the gateway's clinic")
    meter = session.get(Meter, device.meter_key)
    if meter is None:
        meter = Meter(
            meter_key=device.meter_key,
            clinic_id=gateway.clinic_id,
            kind=kind,
            manufacturer=device.manufacturer,
            model=device.model,
            serial_number=device.serial_number,
            address=device.address,
        )
        session.add(meter)
    slot = ANY_DEVICE_USER if device_user_id is None else device_user_id
    existing = session.scalar(
        select(MeterBinding).where(
            MeterBinding.gateway_id == gateway_id,
            MeterBinding.meter_key == device.meter_key,
            MeterBinding.device_user_id == slot,
            MeterBinding.active.is_(True),
        )
    )
    if existing is not None:
        existing.active = False
        existing.unbound_at = datetime.now(UTC)
        session.flush()
    binding = MeterBinding(
        gateway_id=gateway_id,
        meter_key=device.meter_key,
        device_user_id=slot,
        patient_id=patient_id,
        bound_by=bound_by,
    )
    session.add(binding)
    return binding


def gateway_config(session: Session, gateway_id: str) -> GatewayConfig:
    """The retained config for a gateway: its active bindings, opaque ids only."""
    rows = session.scalars(
        select(MeterBinding)
        .where(MeterBinding.gateway_id == gateway_id, MeterBinding.active.is_(True))
        .order_by(MeterBinding.binding_id)
    )
    return GatewayConfig(
        gateway_id=gateway_id,
        issued_at=datetime.now(UTC),
        bindings=tuple(
            MeterBindingPayload(
                meter_key=b.meter_key,
                user_id=None if b.device_user_id == ANY_DEVICE_USER else b.device_user_id,
                patient_id=b.patient_id,
            )
            for b in rows
        ),
    )


def publish_gateway_config(
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    tls_ca_file: str | None = None,
) -> None:
    """Publish `config` retained at QoS 1 and wait for the broker's PUBACK."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=f"vitalgate-admin-{secrets.token_hex(4)}"
    )
    client.username_pw_set(username, password)
    if tls_ca_file:
        client.tls_set(ca_certs=tls_ca_file)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        info = client.publish(config_topic(config.gateway_id), config.model_dump_json(), qos=1, retain=True)
        info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise AdminError(f"broker did not acknowledge the config for gateway {config.gateway_id}")
    finally:
        client.disconnect()
        client.loop_stop()
    logger.info(
        "gateway config published", extra={"gateway_id": config.gateway_id, "bindings": len(config.bindings)}
    )
