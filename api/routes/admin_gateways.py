"""The clinic's gateways, for its administrators: provision, see, deactivate, reactivate, rotate.

- GET  /api/v1/admin/gateways                                 the clinic's gateways
- POST /api/v1/admin/gateways                                 provision one: its broker account, and
                                                              the installer's file (shown once)
- POST /api/v1/admin/gateways/{gateway_id}/deactivate         its broker account disabled at once
- POST /api/v1/admin/gateways/{gateway_id}/reactivate
- POST /api/v1/admin/gateways/{gateway_id}/rotate-credentials a new password; a new installer file
- POST /api/v1/admin/gateways/{gateway_id}/publish-config     send its bindings again

The broker accounts are made through `ApiServices.gateway_accounts` (the composition root hands in
the implementation on Mosquitto's dynamic security plugin): a client with the gateway id as username
and fixed client id, in a role confined to its own topics; no password file, no reload. The
password is in the installer's file only: the clinic database keeps its hash, and the file is
answered once. The order of steps makes a failure safe: the id is checked free first; the broker
account is made; then the gateway and its audit entry commit together (if that fails, the broker
account is removed again). Deactivation disables the broker account before the database records it,
so a failure leaves the gateway refused by the broker, never the other way round.

After a change of a gateway's bindings the routes publish its retained configuration through
`ApiServices.gateway_configs`; the answer says whether that went out (`gateway_config`), and
publish-config sends it again.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.broker_accounts import (
    BrokerAccountsError,
    GatewayAccounts,
    GatewayAlreadyProvisionedError,
    GatewayCredentials,
    InvalidGatewayIdError,
)
from api.deps import ApiServices, Services
from api.errors import ApiError, ErrorCode
from api.limits import OPAQUE_ID_MAX
from api.routes.admin_common import ADMIN_PREFIX, AdminActor, Audited, record_refusal, run_change, run_read
from storage.clinic.administration import gateways as admin
from storage.clinic.models import Gateway, MeterBinding

logger = logging.getLogger(__name__)

router = APIRouter(prefix=f"{ADMIN_PREFIX}/gateways", tags=["admin"])

GATEWAY_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
GatewayId = Annotated[str, Path(pattern=GATEWAY_ID)]


class ConfigDelivery(enum.StrEnum):
    """Whether the changed gateways' configuration went out."""

    PUBLISHED = "published"
    FAILED = "failed"  # the change stands; send it again with publish-config
    NOT_CONFIGURED = "not_configured"  # this API process has no broker connection for configs
    NOT_NEEDED = "not_needed"  # no gateway's bindings changed


class GatewayOut(BaseModel):
    gateway_id: str
    active: bool
    created_at: datetime
    last_seen_at: datetime | None
    active_bindings: int


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_id: str = Field(
        pattern=GATEWAY_ID, max_length=OPAQUE_ID_MAX, description="also its broker username and client id"
    )


class InstallerFile(BaseModel):
    """The gateway's configuration file with its broker password: answered once, never kept."""

    gateway_id: str
    file_name: str
    content: str = Field(description="TOML for `vitalgate gateway run --config FILE`")


class ConfigPublished(BaseModel):
    gateway_id: str
    gateway_config: ConfigDelivery


def gateway_out(session: Session, gateway: Gateway) -> GatewayOut:
    bindings = session.scalar(
        select(func.count())
        .select_from(MeterBinding)
        .where(MeterBinding.gateway_id == gateway.gateway_id, MeterBinding.active.is_(True))
    )
    return GatewayOut(
        gateway_id=gateway.gateway_id,
        active=gateway.active,
        created_at=gateway.created_at,
        last_seen_at=gateway.last_seen_at,
        active_bindings=int(bindings or 0),
    )


def _installer_file(gateway_id: str, credentials: GatewayCredentials) -> InstallerFile:
    return InstallerFile(
        gateway_id=gateway_id,
        file_name=f"vitalgate-gateway-{gateway_id}.toml",
        content=credentials.settings_toml,
    )


def _accounts(services: ApiServices) -> GatewayAccounts:
    accounts = services.gateway_accounts
    if accounts is None:
        raise ApiError(ErrorCode.SERVICE_UNAVAILABLE, "gateway provisioning is not configured on this server")
    return accounts


def _broker_failed(gateway_id: str, exc: BrokerAccountsError) -> ApiError:
    """The broker's refusal as the API's answer: an id the broker has already, an id it cannot take
    (a clinic account's name), or the broker unavailable or refusing (503: try again)."""
    if isinstance(exc, GatewayAlreadyProvisionedError):
        return ApiError(
            ErrorCode.ADMIN_GATEWAY_EXISTS,
            f"gateway {gateway_id} has a broker account already",
            field="gateway_id",
        )
    if isinstance(exc, InvalidGatewayIdError):
        return ApiError(
            ErrorCode.ADMIN_INVALID_ID,
            "this id cannot be a gateway's broker account",
            field="gateway_id",
            status_code=422,
        )
    logger.error(
        "broker did not change a gateway account",
        extra={"gateway_id": gateway_id, "error": type(exc).__name__},
    )
    return ApiError(ErrorCode.SERVICE_UNAVAILABLE, "the broker did not make the change; try again")


async def publish_configs(services: ApiServices, gateway_ids: list[str]) -> ConfigDelivery:
    """Publish each gateway's configuration; a failure is logged and reported, never raised (the
    change it follows has committed)."""
    if not gateway_ids:
        return ConfigDelivery.NOT_NEEDED
    publisher = services.gateway_configs
    if publisher is None:
        return ConfigDelivery.NOT_CONFIGURED
    delivery = ConfigDelivery.PUBLISHED
    for gateway_id in gateway_ids:
        try:
            await publisher.publish_config(gateway_id)
        except Exception as exc:  # the broker or the database: the administrator can send it again
            logger.warning(
                "gateway config not published", extra={"gateway_id": gateway_id, "error": type(exc).__name__}
            )
            delivery = ConfigDelivery.FAILED
    return delivery


async def _withdraw(accounts: GatewayAccounts, gateway_id: str) -> None:
    """Remove a broker account whose gateway was not recorded: no account without its record."""
    try:
        await accounts.delete_gateway(gateway_id)
    except BrokerAccountsError as exc:
        logger.error(
            "broker account of an unrecorded gateway not removed",
            extra={"gateway_id": gateway_id, "error": type(exc).__name__},
        )


@router.get("")
async def list_gateways(actor: AdminActor, services: Services) -> list[GatewayOut]:
    return await run_read(
        services, actor, lambda s: [gateway_out(s, g) for g in admin.list_gateways(s, actor)]
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def provision_gateway(body: GatewayIn, actor: AdminActor, services: Services) -> InstallerFile:
    accounts = _accounts(services)
    gateway_id = body.gateway_id
    audited = Audited("provision_gateway", "gateway", gateway_id)
    await run_change(services, actor, audited, lambda s: admin.check_new_gateway_id(s, actor, gateway_id))
    try:
        credentials = await accounts.provision_gateway(gateway_id)
    except BrokerAccountsError as exc:
        answer = _broker_failed(gateway_id, exc)
        if answer.code is not ErrorCode.SERVICE_UNAVAILABLE:
            await record_refusal(services, actor, audited, answer.code.value)
        raise answer from exc
    try:
        await run_change(
            services,
            actor,
            audited,
            lambda s: admin.register_gateway(
                s, actor, gateway_id=gateway_id, mqtt_password=credentials.password
            ),
        )
    except BaseException:
        await _withdraw(accounts, gateway_id)
        raise
    return _installer_file(gateway_id, credentials)


@router.post("/{gateway_id}/deactivate")
async def deactivate_gateway(gateway_id: GatewayId, actor: AdminActor, services: Services) -> GatewayOut:
    accounts = _accounts(services)
    audited = Audited("deactivate_gateway", "gateway", gateway_id)

    await run_change(services, actor, audited, lambda s: admin.check_gateway_active(s, actor, gateway_id))
    try:
        await accounts.disable_gateway(gateway_id)
    except BrokerAccountsError as exc:
        raise _broker_failed(gateway_id, exc) from exc

    def change(session: Session) -> GatewayOut:
        return gateway_out(session, admin.deactivate_gateway(session, actor, gateway_id))

    return await run_change(services, actor, audited, change)


@router.post("/{gateway_id}/reactivate")
async def reactivate_gateway(gateway_id: GatewayId, actor: AdminActor, services: Services) -> GatewayOut:
    accounts = _accounts(services)

    def change(session: Session) -> GatewayOut:
        return gateway_out(session, admin.reactivate_gateway(session, actor, gateway_id))

    result = await run_change(services, actor, Audited("reactivate_gateway", "gateway", gateway_id), change)
    try:
        await accounts.enable_gateway(gateway_id)
    except BrokerAccountsError as exc:
        raise _broker_failed(gateway_id, exc) from exc
    return result


@router.post("/{gateway_id}/rotate-credentials")
async def rotate_gateway_credentials(
    gateway_id: GatewayId, actor: AdminActor, services: Services
) -> InstallerFile:
    accounts = _accounts(services)
    audited = Audited("rotate_gateway_credentials", "gateway", gateway_id)

    await run_change(services, actor, audited, lambda s: admin.check_gateway_active(s, actor, gateway_id))
    try:
        credentials = await accounts.rotate_password(gateway_id)
    except BrokerAccountsError as exc:
        raise _broker_failed(gateway_id, exc) from exc
    await run_change(
        services,
        actor,
        audited,
        lambda s: admin.record_rotated_credentials(s, actor, gateway_id, mqtt_password=credentials.password),
    )
    return _installer_file(gateway_id, credentials)


@router.post("/{gateway_id}/publish-config")
async def publish_gateway_config(
    gateway_id: GatewayId, actor: AdminActor, services: Services
) -> ConfigPublished:
    await run_read(
        services,
        actor,
        lambda s: admin.get_gateway(s, actor, gateway_id).gateway_id,
        denied_as="publish_config",
    )
    return ConfigPublished(
        gateway_id=gateway_id, gateway_config=await publish_configs(services, [gateway_id])
    )
