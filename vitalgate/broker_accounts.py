"""Gateway accounts on Mosquitto's dynamic security plugin, managed over `$CONTROL/dynamic-security/v1`.

Implements :class:`api.broker_accounts.GatewayAccounts`. Facts from the plugin's documentation and
sources at v2.0.11 (eclipse/mosquitto `plugins/dynamic-security/README.md`, `clients.c`, `roles.c`,
`acl.c`, `plugin.c`):

- Commands are JSON `{"commands": [...]}` published to `$CONTROL/dynamic-security/v1`; the plugin
  answers every command of a message in one JSON `{"responses": [...]}` on
  `$CONTROL/dynamic-security/v1/response`, each response carrying the command's `correlationData`
  and, on failure, an `error` string ("Client already exists", "Client not found", ...). Responses go
  to every subscriber of that topic at QoS 0, so each command carries a fresh correlation id.
- A client whose `clientid` is set logs in only with that client id; `disableClient`,
  `setClientPassword` and `deleteClient` disconnect its connected devices at once.
- In 2.0 ACL topics are literal: no `%c`/`%u` substitution (that arrives in 2.1). So each gateway has
  a role of its own, `vitalgate-gw-<gateway id>`, naming its five topics; the shared role
  `vitalgate-gateway` (through the group `vitalgate-gateways`) denies everything else explicitly,
  beside the default deny of deploy/mosquitto/dynamic-security.json. Client roles are checked before
  group roles, so the gateway's own grants come first.
- Passwords are hashed by the plugin (PBKDF2-SHA512, 101 iterations in 2.0); the passwords made here
  are 256-bit random secrets, which no dictionary reaches whatever the iteration count.

Each operation opens its own connection (clinic listener, the vitalgate-broker-admin certificate, a
client id of its own), sends its commands, waits for their responses with a timeout, and closes:
administration is rare, and nothing is left to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from api.broker_accounts import (
    BrokerAccountsDeniedError,
    BrokerAccountsError,
    BrokerCommandError,
    BrokerUnavailableError,
    GatewayAlreadyProvisionedError,
    GatewayCredentials,
    GatewayNotProvisionedError,
    InvalidGatewayIdError,
)
from vitalgate.settings import Settings
from vitals.mqtt_link import LinkConfig, TlsParameters, build_client, connect
from vitals.topics import ID_PATTERN, TOPIC_ROOT

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
GATEWAYS_GROUP = "vitalgate-gateways"
GATEWAY_ROLE_PREFIX = "vitalgate-gw-"
# Clinic accounts and clinic client ids (vitalgate-ingest, vitalgate-ingest-1, vitalgate-alerts, ...)
# begin with this; no gateway id may, so no gateway can ever hold a clinic client id.
CLINIC_NAME_PREFIX = "vitalgate-"
# Gateway channels by direction (DESIGN.md, MQTT): what a gateway publishes, what it receives.
GATEWAY_PUBLISHES = ("readings", "status")
GATEWAY_RECEIVES = ("acks", "config", "commands")

CLIENT_NOT_FOUND = "Client not found"
CLIENT_EXISTS = "Client already exists"
ROLE_EXISTS = "Role already exists"
ROLE_NOT_FOUND = "Role not found"
QOS_AT_LEAST_ONCE = 1


def check_gateway_id(gateway_id: str) -> str:
    if not ID_PATTERN.fullmatch(gateway_id):
        raise InvalidGatewayIdError(f"a gateway id must match {ID_PATTERN.pattern}")
    if gateway_id.lower().startswith(CLINIC_NAME_PREFIX):
        raise InvalidGatewayIdError(f"gateway ids beginning with {CLINIC_NAME_PREFIX!r} are clinic names")
    return gateway_id


def gateway_role_name(gateway_id: str) -> str:
    return f"{GATEWAY_ROLE_PREFIX}{gateway_id}"


def gateway_role_acls(gateway_id: str) -> list[dict[str, Any]]:
    """The gateway's own topics, literally: publish readings and status; subscribe to and receive
    acks, config and commands."""
    base = f"{TOPIC_ROOT}/gw/{check_gateway_id(gateway_id)}"
    acls: list[dict[str, Any]] = [
        {"acltype": "publishClientSend", "topic": f"{base}/{channel}", "priority": 0, "allow": True}
        for channel in GATEWAY_PUBLISHES
    ]
    for channel in GATEWAY_RECEIVES:
        acls.append(
            {"acltype": "subscribeLiteral", "topic": f"{base}/{channel}", "priority": 0, "allow": True}
        )
        acls.append(
            {"acltype": "publishClientReceive", "topic": f"{base}/{channel}", "priority": 0, "allow": True}
        )
    return acls


# -- the file a gateway is given ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayBrokerAddress:
    """The broker as gateways reach it: written into each gateway's settings file."""

    host: str
    port: int = 8883
    ca_pem: str | None = None  # None: the gateway verifies the broker with its system trust store


_PEM = re.compile(r"^[A-Za-z0-9+/=\s-]+$")


def _toml_string(value: str) -> str:
    # A TOML basic string takes JSON's escapes (TOML 1.0 §String), so json.dumps writes a valid one.
    return json.dumps(value, ensure_ascii=True)


def gateway_settings_toml(gateway_id: str, password: str, broker: GatewayBrokerAddress) -> str:
    """Settings for `vitalgate --config FILE gateway run`, complete for the broker connection: the
    gateway's username and client id are its gateway id."""
    lines = [
        f"# vitalgate gateway {gateway_id}: broker account. Keep this file private (chmod 600):",
        "# it holds the gateway's password. A new file replaces it when the password is rotated.",
        "",
        "[gateway]",
        f"gateway_id = {_toml_string(gateway_id)}",
        "",
        "[mqtt]",
        f"host = {_toml_string(broker.host)}",
        f"port = {broker.port}",
        f"username = {_toml_string(gateway_id)}",
        f"password = {_toml_string(password)}",
        f"client_id = {_toml_string(gateway_id)}",
    ]
    if broker.ca_pem is not None:
        if not _PEM.fullmatch(broker.ca_pem):
            raise ValueError("the CA certificate is not PEM text")
        # A literal multi-line string: PEM text has no quote, so it goes in as it is.
        lines.append(f"tls_ca_pem = '''\n{broker.ca_pem.strip()}\n'''")
    else:
        lines.append("tls = true")
    return "\n".join(lines) + "\n"


# -- talking to the plugin ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DynsecAdminConfig:
    """How the clinic reaches the plugin: the broker's clinic listener and the admin account."""

    host: str
    port: int
    client_id: str = "vitalgate-broker-admin"  # each connection adds a suffix of its own
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_plain_mqtt: bool = False  # development brokers only
    timeout_s: float = 10.0

    @property
    def use_tls(self) -> bool:
        return self.tls_ca_file is not None or self.tls_cert_file is not None


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    error: str | None
    data: dict[str, Any]


class _ControlConnection:
    """One MQTT v5 connection to the plugin, bridged to asyncio (paho's network thread only hands
    events to the event loop)."""

    def __init__(self, config: DynsecAdminConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self._loop = loop
        if not config.use_tls and not config.allow_plain_mqtt:
            raise BrokerAccountsError(
                "refusing unencrypted MQTT for broker administration: configure TLS (tls_ca_file, "
                "tls_cert_file, tls_key_file), or allow_plain_mqtt for a development broker"
            )
        self._link = LinkConfig(
            host=config.host,
            port=config.port,
            client_id=f"{config.client_id}-{secrets.token_hex(4)}",
            username=config.username,
            password=config.password,
            tls=(
                TlsParameters(
                    ca_file=config.tls_ca_file, cert_file=config.tls_cert_file, key_file=config.tls_key_file
                )
                if config.use_tls
                else None
            ),
            keepalive_s=30,
            tcp_nodelay=False,
            connect_timeout_s=config.timeout_s,
        )
        self._client = build_client(self._link)
        self._connack: asyncio.Future[ReasonCode] = loop.create_future()
        self._acks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}
        self._lost: str | None = None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    # -- paho callbacks (network thread) ----------------------------------------------------------
    def _in_loop(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._in_loop(_settle, self._connack, reason)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._in_loop(self._fail_all, f"connection to the broker lost ({reason})")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self._in_loop(self._acked, mid, list(codes))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        self._in_loop(self._acked, mid, [code])

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._in_loop(self._responses, bytes(message.payload))

    # -- in the event loop -------------------------------------------------------------------------
    def _acked(self, mid: int, codes: list[ReasonCode]) -> None:
        waiter = self._acks.pop(mid, None)
        if waiter is not None:
            _settle(waiter, codes)

    def _responses(self, payload: bytes) -> None:
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            logger.warning("dynamic security response not understood", extra={"bytes": len(payload)})
            return
        for response in responses if isinstance(responses, list) else ():
            if not isinstance(response, dict):
                continue
            waiter = self._pending.pop(str(response.get("correlationData")), None)
            if waiter is None:
                continue  # another administrator's answer: responses go to every subscriber
            error = response.get("error")
            data = response.get("data")
            _settle(
                waiter,
                CommandResult(
                    str(response.get("command")),
                    str(error) if error is not None else None,
                    data if isinstance(data, dict) else {},
                ),
            )

    def _fail_all(self, reason: str) -> None:
        self._lost = reason
        waiters: list[asyncio.Future[Any]] = [*self._acks.values(), *self._pending.values(), self._connack]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(BrokerUnavailableError(reason))
        self._acks.clear()
        self._pending.clear()

    async def _wait(self, waiter: asyncio.Future[Any], what: str) -> Any:
        try:
            return await asyncio.wait_for(waiter, self.config.timeout_s)
        except TimeoutError:
            raise BrokerUnavailableError(
                f"no {what} from the broker within {self.config.timeout_s:g} s"
            ) from None

    # -- operations ------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await asyncio.to_thread(connect, self._client, self._link)
        except ssl.SSLError as exc:
            raise BrokerAccountsDeniedError(f"TLS with the broker failed: {exc.reason}") from exc
        except OSError as exc:
            raise BrokerUnavailableError(
                f"broker {self.config.host}:{self.config.port} unreachable: {exc.strerror or exc}"
            ) from exc
        self._client.loop_start()
        reason: ReasonCode = await self._wait(self._connack, "CONNACK")
        if reason.is_failure:
            raise BrokerAccountsDeniedError(f"the broker refused the administration login: {reason}")
        rc, mid = self._client.subscribe(RESPONSE_TOPIC, qos=QOS_AT_LEAST_ONCE)
        codes = await self._wait(self._ack_waiter(rc, mid), "SUBACK")
        if codes[0].is_failure:
            raise BrokerAccountsDeniedError(f"not allowed to read {RESPONSE_TOPIC}: {codes[0]}")

    def _ack_waiter(self, rc: MQTTErrorCode | int, mid: int | None) -> asyncio.Future[list[ReasonCode]]:
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise BrokerUnavailableError(self._lost or f"not sent: {mqtt.error_string(rc)}")
        waiter: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._acks[mid] = waiter
        return waiter

    async def request(self, commands: Iterable[dict[str, Any]]) -> list[CommandResult]:
        """Send commands in one message; their results, in order."""
        waiters: list[asyncio.Future[CommandResult]] = []
        sent = []
        for command in commands:
            correlation = uuid.uuid4().hex
            waiter: asyncio.Future[CommandResult] = self._loop.create_future()
            self._pending[correlation] = waiter
            waiters.append(waiter)
            sent.append({**command, "correlationData": correlation})
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": sent}), qos=QOS_AT_LEAST_ONCE)
        codes = await self._wait(self._ack_waiter(info.rc, info.mid), "PUBACK")
        if codes[0].is_failure:
            raise BrokerAccountsDeniedError(f"not allowed to send {CONTROL_TOPIC} commands: {codes[0]}")
        return [
            await self._wait(waiter, f"answer to {cmd['command']}")
            for waiter, cmd in zip(waiters, sent, strict=True)
        ]

    async def close(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._fail_all("connection closed")


def _settle(waiter: asyncio.Future[Any], value: Any) -> None:
    if not waiter.done():
        waiter.set_result(value)


class DynsecGatewayAccounts:
    """:class:`api.broker_accounts.GatewayAccounts` on Mosquitto's dynamic security plugin."""

    def __init__(self, admin: DynsecAdminConfig, gateway_broker: GatewayBrokerAddress) -> None:
        self.admin = admin
        self.gateway_broker = gateway_broker

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_ControlConnection]:
        connection = _ControlConnection(self.admin, asyncio.get_running_loop())
        try:
            await connection.open()
            yield connection
        finally:
            await connection.close()

    def _credentials(self, gateway_id: str, password: str) -> GatewayCredentials:
        return GatewayCredentials(
            gateway_id,
            username=gateway_id,
            client_id=gateway_id,
            password=password,
            settings_toml=gateway_settings_toml(gateway_id, password, self.gateway_broker),
        )

    async def provision_gateway(self, gateway_id: str) -> GatewayCredentials:
        role = gateway_role_name(check_gateway_id(gateway_id))
        password = secrets.token_urlsafe(32)
        async with self._connection() as control:
            (existing,) = await control.request([{"command": "getClient", "username": gateway_id}])
            if existing.error is None:
                raise GatewayAlreadyProvisionedError(f"gateway {gateway_id} already has a broker account")
            if existing.error != CLIENT_NOT_FOUND:
                raise BrokerCommandError(f"getClient {gateway_id}: {existing.error}")
            acls = gateway_role_acls(gateway_id)
            role_result, client_result = await control.request(
                [
                    {"command": "createRole", "rolename": role, "acls": acls,
                     "textdescription": "one gateway's own topics"},
                    {"command": "createClient", "username": gateway_id, "password": password,
                     "clientid": gateway_id, "textdescription": "vitalgate gateway",
                     "roles": [{"rolename": role, "priority": 0}],
                     "groups": [{"groupname": GATEWAYS_GROUP, "priority": 0}]},
                ]
            )  # fmt: skip
            if client_result.error == CLIENT_EXISTS:
                raise GatewayAlreadyProvisionedError(f"gateway {gateway_id} already has a broker account")
            if client_result.error is not None:
                raise BrokerCommandError(f"createClient {gateway_id}: {client_result.error}")
            if role_result.error == ROLE_EXISTS:
                # Left by an interrupted deletion: make it exactly this gateway's rights again.
                (modified,) = await control.request(
                    [{"command": "modifyRole", "rolename": role, "acls": acls}]
                )
                if modified.error is not None:
                    raise BrokerCommandError(f"modifyRole {role}: {modified.error}")
            elif role_result.error is not None:
                raise BrokerCommandError(f"createRole {role}: {role_result.error}")
        logger.info("gateway broker account provisioned", extra={"gateway_id": gateway_id})
        return self._credentials(gateway_id, password)

    async def _client_command(self, command: dict[str, Any]) -> None:
        gateway_id = check_gateway_id(str(command["username"]))
        async with self._connection() as control:
            (result,) = await control.request([command])
        if result.error == CLIENT_NOT_FOUND:
            raise GatewayNotProvisionedError(f"gateway {gateway_id} has no broker account")
        if result.error is not None:
            raise BrokerCommandError(f"{command['command']} {gateway_id}: {result.error}")

    async def disable_gateway(self, gateway_id: str) -> None:
        await self._client_command({"command": "disableClient", "username": gateway_id})
        logger.info("gateway broker account disabled", extra={"gateway_id": gateway_id})

    async def enable_gateway(self, gateway_id: str) -> None:
        await self._client_command({"command": "enableClient", "username": gateway_id})
        logger.info("gateway broker account enabled", extra={"gateway_id": gateway_id})

    async def rotate_password(self, gateway_id: str) -> GatewayCredentials:
        password = secrets.token_urlsafe(32)
        await self._client_command(
            {"command": "setClientPassword", "username": gateway_id, "password": password}
        )
        logger.info("gateway broker password rotated", extra={"gateway_id": gateway_id})
        return self._credentials(gateway_id, password)

    async def delete_gateway(self, gateway_id: str) -> None:
        role = gateway_role_name(check_gateway_id(gateway_id))
        async with self._connection() as control:
            client_result, role_result = await control.request(
                [
                    {"command": "deleteClient", "username": gateway_id},
                    {"command": "deleteRole", "rolename": role},
                ]
            )
        if role_result.error not in (None, ROLE_NOT_FOUND):
            raise BrokerCommandError(f"deleteRole {role}: {role_result.error}")
        if client_result.error == CLIENT_NOT_FOUND:
            raise GatewayNotProvisionedError(f"gateway {gateway_id} has no broker account")
        if client_result.error is not None:
            raise BrokerCommandError(f"deleteClient {gateway_id}: {client_result.error}")
        logger.info("gateway broker account deleted", extra={"gateway_id": gateway_id})


def accounts_from_settings(settings: Settings) -> DynsecGatewayAccounts:
    """The composition root's wiring: `Settings.broker_accounts` onto :class:`DynsecGatewayAccounts`."""
    ba = settings.broker_accounts
    if ba.gateway_host is None:
        raise BrokerAccountsError(
            "broker_accounts.gateway_host is needed: gateways are told where the broker is"
        )
    ca_pem = ba.gateway_ca_file.read_text(encoding="ascii") if ba.gateway_ca_file is not None else None
    admin = DynsecAdminConfig(
        host=ba.host,
        port=ba.port,
        client_id=ba.client_id,
        username=ba.username,
        password=ba.password.get_secret_value() if ba.password is not None else None,
        tls_ca_file=ba.tls_ca_file,
        tls_cert_file=ba.tls_cert_file,
        tls_key_file=ba.tls_key_file,
        allow_plain_mqtt=ba.allow_plain_mqtt,
        timeout_s=ba.timeout_s,
    )
    return DynsecGatewayAccounts(admin, GatewayBrokerAddress(ba.gateway_host, ba.gateway_port, ca_pem))
