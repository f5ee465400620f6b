"""Clinic administration: enrol clinics, users, patients and gateways, bind meters to patients, and
publish each gateway's bindings on its retained `config` topic (DESIGN.md, MQTT).

Used by `vitalgate admin` and by the demo. Names and contact details go into the clinic database
only; everything that leaves it (topics, payloads, logs) carries opaque ids.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic import enrolment, repository
from storage.clinic.audit import record_audit
from storage.clinic.models import (
    Clinic,
    Gateway,
    GuidelineProfile,
    Meter,
    MeterBinding,
    MeterKind,
    Patient,
    User,
    UserRole,
)
from vitalgate.mosquitto import BrokerRole
from vitals.payload import GatewayConfig
from vitals.readings import DeviceIdentity
from vitals.topics import ID_PATTERN, config_topic

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
RESERVED_BROKER_USERNAMES = frozenset(role.value for role in BrokerRole if role is not BrokerRole.GATEWAY)


class AdminError(ValueError):
    """An administrative request that cannot be carried out; the message says why (ids only)."""


def add_clinic(
    session: Session, clinic_id: str, name: str, *, profile: GuidelineProfile, timezone: str = "UTC"
) -> Clinic:
    if session.get(Clinic, clinic_id) is not None:
        raise AdminError(f"clinic {clinic_id} exists already")
    clinic = enrolment.add_clinic(session, clinic_id=clinic_id, name=name, profile=profile)
    clinic.timezone = timezone
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
    email = email.strip().lower()  # logins compare lower-cased e-mail addresses
    if session.scalar(select(User.user_id).where(User.email == email)) is not None:
        raise AdminError(f"another account uses that e-mail address (user {user_id} not created)")
    return enrolment.add_user(
        session,
        user_id=user_id,
        clinic_id=clinic_id,
        email=email,
        display_name=display_name,
        roles=sorted(set(roles)),
        password=password,
    )


# The audit log's actor for what an operator does with `vitalgate admin` (no signed-in account).
ADMIN_CLI_ACTOR = "admin-cli"


def unlock_account(session: Session, user_id: str) -> int:
    """Clear an account's consecutive failed logins (api.routes.auth locks it at 100), audited as
    "unlock_account". Returns how many there were."""
    user = session.get(User, user_id)
    if user is None:
        raise AdminError(f"no user {user_id}")
    failed = user.failed_logins
    user.failed_logins = 0
    record_audit(
        session,
        actor=ADMIN_CLI_ACTOR,
        action="unlock_account",
        object_type="user",
        object_id=user_id,
        clinic_id=user.clinic_id,
        details={"failed_logins": failed},
    )
    return failed


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
    staff_ids = list(staff_ids)
    for user_id in [family_doctor_id, *staff_ids]:
        user = session.get(User, user_id)
        if user is None or user.clinic_id != clinic_id:
            raise AdminError(f"no user {user_id} in clinic {clinic_id}")
    return enrolment.enrol_patient(
        session,
        patient_id=patient_id,
        clinic_id=clinic_id,
        given_name=given_name,
        family_name=family_name,
        family_doctor_id=family_doctor_id,
        staff_ids=staff_ids,
    )


def add_gateway(session: Session, *, clinic_id: str, gateway_id: str) -> str:
    """Register a gateway and return its new MQTT password (shown once; only its hash is kept)."""
    if not ID_PATTERN.fullmatch(gateway_id):
        raise AdminError(f"a gateway id must match {ID_PATTERN.pattern}")
    if gateway_id in RESERVED_BROKER_USERNAMES:
        # The gateway id is its broker username: these names carry the clinic services' ACL rights.
        raise AdminError(f"{gateway_id} is a reserved broker account name")
    if session.get(Clinic, clinic_id) is None:
        raise AdminError(f"no clinic {clinic_id}")
    if session.get(Gateway, gateway_id) is not None:
        raise AdminError(f"gateway {gateway_id} exists already")
    password = secrets.token_urlsafe(24)
    enrolment.register_gateway(session, gateway_id=gateway_id, clinic_id=clinic_id, mqtt_password=password)
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
        enrolment.register_meter(session, clinic_id=gateway.clinic_id, device=device, kind=kind)
    elif meter.kind is not kind:
        raise AdminError(f"meter {device.meter_key} is registered as a {meter.kind.value} meter")
    return repository.bind_meter(
        session,
        gateway_id=gateway_id,
        meter_key=device.meter_key,
        patient_id=patient_id,
        device_user_id=device_user_id,
        bound_by=bound_by,
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
