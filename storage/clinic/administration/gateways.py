"""Gateways: registering them, deactivation and reactivation, and rotated broker credentials."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.clinic import enrolment
from storage.clinic.administration.clinic import own_clinic
from storage.clinic.administration.common import Actor, audit_change, checked_id, conflict, invalid, not_found
from storage.clinic.models import Gateway


def own_gateway(session: Session, actor: Actor, gateway_id: str, field: str = "gateway_id") -> Gateway:
    """A gateway of the actor's clinic, or `admin.not_found`."""
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or gateway.clinic_id != actor.clinic_id:
        raise not_found("gateway", gateway_id, field)
    return gateway


def get_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    return own_gateway(session, actor, gateway_id)


def list_gateways(session: Session, actor: Actor) -> list[Gateway]:
    return list(
        session.scalars(
            select(Gateway).where(Gateway.clinic_id == actor.clinic_id).order_by(Gateway.gateway_id)
        )
    )


def check_new_gateway_id(
    session: Session, actor: Actor, gateway_id: str, *, reserved: Iterable[str] = ()
) -> str:
    """A gateway id that can be provisioned: well formed, free in every clinic (it is the gateway's
    broker username and client id), and none of `reserved` (the clinic services' broker accounts)."""
    own_clinic(session, actor)
    checked_id(gateway_id, "gateway_id")
    if gateway_id in set(reserved):
        raise invalid("admin.invalid_id", f"{gateway_id} is a reserved broker account name", "gateway_id")
    if session.get(Gateway, gateway_id) is not None:
        raise conflict("admin.gateway_exists", f"gateway {gateway_id} exists already", "gateway_id")
    return gateway_id


def register_gateway(
    session: Session,
    actor: Actor,
    *,
    gateway_id: str,
    mqtt_password: str,
    reserved: Iterable[str] = (),
) -> Gateway:
    """Record a provisioned gateway; its broker password is kept only as a hash."""
    check_new_gateway_id(session, actor, gateway_id, reserved=reserved)
    gateway = enrolment.register_gateway(
        session, gateway_id=gateway_id, clinic_id=actor.clinic_id, mqtt_password=mqtt_password
    )
    audit_change(session, actor, "provision_gateway", "gateway", gateway_id)
    return gateway


def check_gateway_active(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    """The actor's clinic's gateway, if it is active (`admin.gateway_inactive` if not)."""
    gateway = own_gateway(session, actor, gateway_id)
    if not gateway.active:
        raise conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    return gateway


def deactivate_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    """Mark a gateway inactive (the caller disables its broker account in the same step)."""
    gateway = own_gateway(session, actor, gateway_id)
    if not gateway.active:
        raise conflict("admin.gateway_inactive", f"gateway {gateway_id} is already inactive", "gateway_id")
    gateway.active = False
    session.flush()
    audit_change(session, actor, "deactivate_gateway", "gateway", gateway_id)
    return gateway


def reactivate_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    gateway = own_gateway(session, actor, gateway_id)
    if gateway.active:
        raise conflict("admin.gateway_active", f"gateway {gateway_id} is active", "gateway_id")
    gateway.active = True
    session.flush()
    audit_change(session, actor, "reactivate_gateway", "gateway", gateway_id)
    return gateway


def record_rotated_credentials(
    session: Session, actor: Actor, gateway_id: str, *, mqtt_password: str
) -> Gateway:
    """Keep the hash of a gateway's new broker password (the old one no longer works)."""
    gateway = own_gateway(session, actor, gateway_id)
    if not gateway.active:
        raise conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    gateway.mqtt_credential_hash = enrolment.hash_secret(mqtt_password)
    session.flush()
    audit_change(session, actor, "rotate_gateway_credentials", "gateway", gateway_id)
    return gateway
