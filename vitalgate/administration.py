"""Clinic administration for the composition root: `vitalgate admin` (each change audited through
storage.clinic.administration, on behalf of the operator's account or "cli:<os user>"), the
gateway provisioning steps around the broker's accounts, the sender of gateway configurations the
API is handed, and the seeding helpers the demo and tests use.

Names and contact details go into the clinic database only; everything that leaves it (topics,
payloads, logs) carries opaque ids.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.broker_accounts import BrokerAccountsError, GatewayAccounts, GatewayCredentials
from storage.clinic import enrolment, repository
from storage.clinic.administration import gateways as gateway_administration
from storage.clinic.administration.common import Actor
from storage.clinic.models import (
    OPAQUE_ID_LENGTH,
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
from vitalgate.settings import Settings
from vitals.mqtt_link import LinkConfig, TlsParameters, build_client, connect
from vitals.payload import GatewayConfig
from vitals.readings import DeviceIdentity
from vitals.topics import ID_PATTERN, config_topic

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
RESERVED_BROKER_USERNAMES = frozenset(role.value for role in BrokerRole if role is not BrokerRole.GATEWAY)


class AdminError(ValueError):
    """An administrative request that cannot be carried out; the message says why (ids only)."""


# -- seeding: the demo's and tests' clinics, written without audit entries ------------------------
# An operator's and an administrator's changes go through storage.clinic.administration (audited):
# `vitalgate admin`, the API and the web app.


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
    prior_memory_belongs: bool = True,
) -> MeterBinding:
    """Bind a meter; by default the readings it already holds are the patient's (a demo meter's
    history is its patient's own)."""
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
        prior_memory_belongs=prior_memory_belongs,
    )


def publish_gateway_config(
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
) -> None:
    """Publish `config` retained at QoS 1 and wait for the broker's PUBACK. A clinic account logs in
    with a username and password, or with its client certificate (deploy/mosquitto)."""
    link = LinkConfig(
        host=host,
        port=port,
        client_id=f"vitalgate-admin-{secrets.token_hex(4)}",
        username=username,
        password=password,
        tls=(
            TlsParameters(
                ca_file=Path(tls_ca_file),
                cert_file=Path(tls_cert_file) if tls_cert_file else None,
                key_file=Path(tls_key_file) if tls_key_file else None,
            )
            if tls_ca_file
            else None
        ),
        keepalive_s=30,
        tcp_nodelay=False,
    )
    client = build_client(link)
    connect(client, link)
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


@dataclass(frozen=True, slots=True)
class ClinicMqttAccount:
    """The clinic account configurations are published with (the alerts channel's, else the
    process's own MQTT account: vitalgate.settings)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ClinicMqttAccount | None:
        """None when the settings name no clinic account (no username, no client certificate)."""
        m, a = settings.mqtt, settings.alerts
        username = a.mqtt_username or m.username
        secret = a.mqtt_password if a.mqtt_username else m.password
        if username is None and m.tls_cert_file is None:
            return None
        return cls(
            host=m.host,
            port=m.port,
            username=username,
            password=secret.get_secret_value() if secret else None,
            tls_ca_file=str(m.tls_ca_file) if m.tls_ca_file else None,
            tls_cert_file=str(m.tls_cert_file) if m.tls_cert_file else None,
            tls_key_file=str(m.tls_key_file) if m.tls_key_file else None,
        )


class GatewayConfigSender:
    """Sends a gateway its bindings as the clinic database holds them now (api.deps.GatewayConfigPublisher).
    One short connection per configuration: bindings change seldom."""

    def __init__(self, account: ClinicMqttAccount, sessions: sessionmaker[Session]) -> None:
        self._account = account
        self._repository = repository.ClinicRepository(sessions)

    def send(self, gateway_id: str) -> GatewayConfig:
        config = self._repository.gateway_config(gateway_id, issued_at=datetime.now(UTC))
        a = self._account
        publish_gateway_config(
            config,
            host=a.host,
            port=a.port,
            username=a.username,
            password=a.password,
            tls_ca_file=a.tls_ca_file,
            tls_cert_file=a.tls_cert_file,
            tls_key_file=a.tls_key_file,
        )
        return config

    async def publish_config(self, gateway_id: str) -> None:
        await asyncio.to_thread(self.send, gateway_id)


# -- `vitalgate admin`: who acts, in which clinic -------------------------------------------------

CLI_ACTOR_PREFIX: Final = "cli:"


def cli_actor_id() -> str:
    """ "cli:<os user>": the audit actor of an operator who names no account (`--actor`)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        name = f"uid{os.getuid()}"
    return (CLI_ACTOR_PREFIX + name)[:OPAQUE_ID_LENGTH]


def resolve_actor(session: Session, *, actor_user_id: str | None, clinic_id: str | None) -> Actor:
    """The operator acting in a clinic: their account (`--actor`, an active administrator, acting in
    their own clinic only) or "cli:<os user>" in the clinic named."""
    if actor_user_id is not None:
        user = session.get(User, actor_user_id)
        if user is None or not user.active or not user.has_role(UserRole.CLINIC_ADMIN):
            raise AdminError(f"--actor {actor_user_id} is not an active clinic administrator")
        if clinic_id is not None and clinic_id != user.clinic_id:
            raise AdminError(
                f"--actor {actor_user_id} administers clinic {user.clinic_id}, not clinic {clinic_id}"
            )
        return Actor(actor_user_id, user.clinic_id)
    if clinic_id is None:
        raise AdminError("name the clinic (--clinic-id) or your account (--actor)")
    if session.get(Clinic, clinic_id) is None:
        raise AdminError(f"no clinic {clinic_id}")
    return Actor(cli_actor_id(), clinic_id)


def clinic_of(session: Session, object_type: str, object_id: str) -> str | None:
    """The clinic of a user, patient, gateway or meter binding, when the operator names the object
    and not the clinic (None: no such object)."""
    row: User | Patient | Gateway | Meter | None = None
    if object_type == "binding":
        binding = session.get(MeterBinding, int(object_id)) if object_id.isdigit() else None
        row = session.get(Meter, binding.meter_key) if binding is not None else None
    elif object_type == "user":
        row = session.get(User, object_id)
    elif object_type == "patient":
        row = session.get(Patient, object_id)
    elif object_type == "gateway":
        row = session.get(Gateway, object_id)
    elif object_type == "meter":
        row = session.get(Meter, object_id)
    return row.clinic_id if row is not None else None


# -- gateways on the broker's accounts ------------------------------------------------------------


def provision_gateway(
    sessions: sessionmaker[Session], actor: Actor, accounts: GatewayAccounts, gateway_id: str
) -> GatewayCredentials:
    """Check the id is free, make the broker account, record the gateway with its audit entry; if
    the record fails, remove the broker account again (no account without its record)."""
    with sessions() as session:
        gateway_administration.check_new_gateway_id(session, actor, gateway_id)
    credentials = asyncio.run(accounts.provision_gateway(gateway_id))
    try:
        with sessions() as session, session.begin():
            gateway_administration.register_gateway(
                session, actor, gateway_id=gateway_id, mqtt_password=credentials.password
            )
    except BaseException:
        try:
            asyncio.run(accounts.delete_gateway(gateway_id))
        except BrokerAccountsError as exc:
            logger.error(
                "broker account of an unrecorded gateway not removed",
                extra={"gateway_id": gateway_id, "error": type(exc).__name__},
            )
        raise
    return credentials


def deactivate_gateway(
    sessions: sessionmaker[Session], actor: Actor, accounts: GatewayAccounts | None, gateway_id: str
) -> None:
    """Disable the broker account first, then record it: a failure leaves the gateway refused."""
    with sessions() as session:
        gateway_administration.check_gateway_active(session, actor, gateway_id)
    if accounts is not None:
        asyncio.run(accounts.disable_gateway(gateway_id))
    with sessions() as session, session.begin():
        gateway_administration.deactivate_gateway(session, actor, gateway_id)


def reactivate_gateway(
    sessions: sessionmaker[Session], actor: Actor, accounts: GatewayAccounts | None, gateway_id: str
) -> None:
    with sessions() as session, session.begin():
        gateway_administration.reactivate_gateway(session, actor, gateway_id)
    if accounts is not None:
        asyncio.run(accounts.enable_gateway(gateway_id))


def rotate_gateway_credentials(
    sessions: sessionmaker[Session], actor: Actor, accounts: GatewayAccounts, gateway_id: str
) -> GatewayCredentials:
    with sessions() as session:
        gateway_administration.check_gateway_active(session, actor, gateway_id)
    credentials = asyncio.run(accounts.rotate_password(gateway_id))
    with sessions() as session, session.begin():
        gateway_administration.record_rotated_credentials(
            session, actor, gateway_id, mqtt_password=credentials.password
        )
    return credentials
