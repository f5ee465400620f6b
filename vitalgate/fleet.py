"""The clinic's watch over its gateways: status consumer, command publisher, operational alerts.

- Reads every gateway's retained status and last will (`vitals.topics.ALL_STATUS_FILTER`) and keeps
  each one's latest report, `Gateway.last_seen_at` and the gateway's decisions carried out in the
  clinic database (storage.clinic.fleet.record_status). Several processes may run one (`vitalgate api`
  and `vitalgate ingest`): each writes the same state, in the order the broker delivered it.
- Publishes, retained on each gateway's `commands` topic, the administrators' decisions on unbound
  readings the gateway has not yet reported carried out: when a decision is taken (the API calls
  `publish_commands`), when the gateway reports one done (the retained list shrinks), when it comes
  back online, and again every `fleet.command_resend_s` while any waits.
- Every `fleet.check_interval_s`: the per-clinic gauges for /metrics (counts only, no personal data),
  and, where an alert engine runs, the operational rules (alerts.operations) through the engine's
  lifecycle and channels. The MQTT part lives here, in the composition root, because the alerts
  package never consumes MQTT itself (DESIGN.md).

paho runs its network loop in its own thread; its callbacks only hand messages to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from alerts.engine import AlertEngine
from alerts.lifecycle import Change
from alerts.operations import OPERATIONAL_RULES, OperationalParameters, operational_outcomes
from storage.clinic.fleet import (
    ClinicFleetGauges,
    GatewayState,
    GatewayWatch,
    StatusRecorded,
    fleet_gauges,
    fleet_watches,
    record_status,
)
from storage.clinic.unbound_readings import pending_commands
from vitalgate.settings import Settings
from vitals.mqtt_link import LinkConfig, TlsParameters, build_client, connect_async
from vitals.payload import GatewayStatus
from vitals.topics import (
    ALL_STATUS_FILTER,
    GatewayChannel,
    InvalidTopicError,
    commands_topic,
    parse_gateway_topic,
)

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE = 1
PUBLISH_TIMEOUT_S = 10.0
GAUGES_MIN_INTERVAL_S = 1.0  # gauges follow status messages at most this often


@dataclass(frozen=True, slots=True)
class FleetConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    client_id: str
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    keepalive_s: int = 30
    operational: OperationalParameters = field(default_factory=OperationalParameters)
    status_stale_after: timedelta = timedelta(minutes=10)
    check_interval_s: float = 60.0
    command_resend_s: float = 300.0

    @classmethod
    def from_settings(
        cls, settings: Settings, *, role: str, process_account: bool = True
    ) -> FleetConfig | None:
        """The account: fleet.mqtt_username, else alerts.mqtt_username, else (`process_account`) the
        process's own account (mqtt.username, or the client certificate that names it). None when there
        is none (nothing to read status with)."""
        f, a, m = settings.fleet, settings.alerts, settings.mqtt
        username = f.mqtt_username or a.mqtt_username or (m.username if process_account else None)
        secret = f.mqtt_password if f.mqtt_username else (a.mqtt_password if a.mqtt_username else m.password)
        if username is None and not (process_account and m.tls_cert_file is not None):
            return None
        return cls(
            host=m.host,
            port=m.port,
            username=username,
            password=secret.get_secret_value() if secret else None,
            client_id=f"vitalgate-fleet-{role}-{secrets.token_hex(4)}",
            tls_ca_file=str(m.tls_ca_file) if m.tls_ca_file else None,
            tls_cert_file=str(m.tls_cert_file) if m.tls_cert_file else None,
            tls_key_file=str(m.tls_key_file) if m.tls_key_file else None,
            keepalive_s=m.keepalive_s,
            operational=OperationalParameters(
                gateway_offline_after=timedelta(seconds=f.gateway_offline_after_s),
                battery_low_percent=f.battery_low_percent,
            ),
            status_stale_after=timedelta(seconds=f.status_stale_after_s),
            check_interval_s=f.check_interval_s,
            command_resend_s=f.command_resend_s,
        )

    def link_config(self, *, client_id: str | None = None, tcp_nodelay: bool = True) -> LinkConfig:
        """This account's connection (paho's session defaults), under `client_id` if given."""
        tls = (
            TlsParameters(
                ca_file=Path(self.tls_ca_file),
                cert_file=Path(self.tls_cert_file) if self.tls_cert_file else None,
                key_file=Path(self.tls_key_file) if self.tls_key_file else None,
            )
            if self.tls_ca_file
            else None
        )
        return LinkConfig(
            host=self.host,
            port=self.port,
            client_id=client_id or self.client_id,
            username=self.username or None,
            password=self.password,
            tls=tls,
            keepalive_s=self.keepalive_s,
            tcp_nodelay=tcp_nodelay,
        )


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    retained: bool
    received_at: datetime


class FleetError(RuntimeError):
    """The broker did not take a command in time."""


class FleetService:
    def __init__(
        self,
        config: FleetConfig,
        sessions: sessionmaker[Session],
        *,
        engine: AlertEngine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.engine = engine
        self.clock = clock
        self.subscribed = threading.Event()
        self.statuses_recorded = 0
        self._queue: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_published: dict[str, float] = {}
        self._unknown_logged: set[str] = set()
        self._gauges_text = ""
        self._gauges_at = 0.0
        self._link = config.link_config()
        self._client = build_client(self._link)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect

    @property
    def stale_after(self) -> timedelta:
        return self.config.status_stale_after

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.error("fleet: broker refused the connection", extra={"reason": str(reason)})
            return
        client.subscribe(ALL_STATUS_FILTER, qos=QOS_AT_LEAST_ONCE)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(r.is_failure for r in reasons):
            logger.error(
                "fleet: the broker refused the status subscription; check the account's ACL",
                extra={"reason": str(reasons[0])},
            )
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        self.subscribed.clear()
        if self._loop is not None:
            logger.warning("fleet: broker connection lost", extra={"reason": str(reason)})

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        item = _Inbound(message.topic, bytes(message.payload), bool(message.retain), datetime.now(UTC))
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._queue.put_nowait, item)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        connect_async(self._client, self._link)
        self._client.loop_start()

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: record status messages as they come, check the fleet every interval."""
        consumer = asyncio.create_task(self._consume())
        try:
            while not stop.is_set():
                try:
                    await self.check()
                except Exception:
                    logger.exception("fleet check failed; tried again at the next interval")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.check_interval_s)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    # -- status messages -------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self.handle(
                    item.topic, item.payload, retained=item.retained, received_at=item.received_at
                )
            except Exception:
                logger.exception("fleet: status message not recorded", extra={"topic": item.topic})

    async def handle(self, topic: str, payload: bytes, *, retained: bool, received_at: datetime) -> None:
        try:
            parsed = parse_gateway_topic(topic)
        except InvalidTopicError:
            return
        if parsed.channel is not GatewayChannel.STATUS or not payload:
            return
        try:
            status = GatewayStatus.model_validate_json(payload)
        except ValidationError as exc:
            logger.warning(
                "fleet: malformed gateway status ignored",
                extra={"gateway_id": parsed.gateway_id, "errors": exc.error_count()},
            )
            return
        if status.gateway_id != parsed.gateway_id:
            logger.warning(
                "fleet: status names another gateway than its topic", extra={"gateway_id": parsed.gateway_id}
            )
            return
        recorded = await asyncio.to_thread(self._record, status, received_at, retained)
        if recorded is None:
            if parsed.gateway_id not in self._unknown_logged:
                self._unknown_logged.add(parsed.gateway_id)
                logger.warning(
                    "fleet: status from a gateway the clinic does not know",
                    extra={"gateway_id": parsed.gateway_id},
                )
            return
        self.statuses_recorded += 1
        if recorded.came_online or not recorded.online:
            logger.info(
                "gateway online" if recorded.online else "gateway offline",
                extra={"gateway_id": recorded.gateway_id, "clinic_id": recorded.clinic_id},
            )
        if self._commands_due(recorded):
            try:
                await self.publish_commands(recorded.gateway_id)
            except FleetError as exc:
                logger.warning(
                    "fleet: commands not published",
                    extra={"gateway_id": recorded.gateway_id, "error": str(exc)},
                )
        if time.monotonic() - self._gauges_at >= GAUGES_MIN_INTERVAL_S:
            await self.refresh_gauges()

    def _record(self, status: GatewayStatus, received_at: datetime, retained: bool) -> StatusRecorded | None:
        with self.sessions() as session, session.begin():
            return record_status(session, status, received_at=received_at, retained=retained)

    def _commands_due(self, recorded: StatusRecorded) -> bool:
        if recorded.newly_applied:
            return True  # the retained list shrinks (or is cleared)
        if not recorded.pending_commands or not recorded.online:
            return False
        last = self._last_published.get(recorded.gateway_id)
        return recorded.came_online or last is None or time.monotonic() - last >= self.config.command_resend_s

    # -- commands --------------------------------------------------------------------------------

    async def publish_commands(self, gateway_id: str) -> int:
        """Publish, retained, the gateway's decisions not yet carried out (none: the retained
        message is cleared). Returns how many were published; raises FleetError when the broker did
        not acknowledge in time."""

        def pending() -> tuple[int, bytes]:
            with self.sessions() as session:
                commands = pending_commands(session, gateway_id=gateway_id, issued_at=self.clock())
            return len(commands.commands), (commands.model_dump_json().encode() if commands.commands else b"")

        count, payload = await asyncio.to_thread(pending)
        info = self._client.publish(commands_topic(gateway_id), payload, qos=QOS_AT_LEAST_ONCE, retain=True)
        try:
            await asyncio.to_thread(info.wait_for_publish, PUBLISH_TIMEOUT_S)
        except (ValueError, RuntimeError) as exc:
            raise FleetError(f"commands for {gateway_id} not published: {exc}") from exc
        if not info.is_published():
            raise FleetError(f"the broker did not acknowledge the commands for {gateway_id} in time")
        self._last_published[gateway_id] = time.monotonic()
        logger.info("gateway commands published", extra={"gateway_id": gateway_id, "commands": count})
        return count

    # -- periodic: gauges and operational alerts -------------------------------------------------

    async def check(self, now: datetime | None = None) -> list[Change]:
        """Refresh the gauges; with an alert engine, apply the operational rules."""
        await self.refresh_gauges()
        if self.engine is None:
            return []
        now = now or self.clock()
        engine = self.engine
        watches = await asyncio.to_thread(self._watches)
        unresolved = {
            (a.patient_id, a.rule_id)
            for a in await asyncio.to_thread(engine.repo.unresolved, None)
            if a.rule_id in OPERATIONAL_RULES
        }
        outcomes = operational_outcomes(watches, self.config.operational, now, unresolved)
        return await engine.apply_outcomes(outcomes, now)

    def _watches(self) -> list[GatewayWatch]:
        with self.sessions() as session:
            return fleet_watches(session)

    async def refresh_gauges(self) -> None:
        def compute() -> list[ClinicFleetGauges]:
            with self.sessions() as session:
                return fleet_gauges(session, now=self.clock(), stale_after=self.config.status_stale_after)

        self._gauges_text = gauges_text(await asyncio.to_thread(compute))
        self._gauges_at = time.monotonic()

    def prometheus_text(self) -> str:
        """The gauges as of the last refresh (Prometheus text exposition 0.0.4)."""
        return self._gauges_text


def gauges_text(gauges: list[ClinicFleetGauges]) -> str:
    """Per clinic (an opaque id): gateways by state, the deepest outbox, readings kept aside."""
    lines = [
        "# HELP vitalgate_fleet_gateways Gateways of a clinic by state (online, offline, unknown: never reported).",
        "# TYPE vitalgate_fleet_gateways gauge",
    ]
    for g in gauges:
        lines += [
            f'vitalgate_fleet_gateways{{clinic_id="{g.clinic_id}",state="{state.value}"}} {g.gateways[state]}'
            for state in GatewayState
        ]
    lines += [
        "# HELP vitalgate_fleet_outbox_depth_max Readings waiting in the deepest gateway outbox of a clinic.",
        "# TYPE vitalgate_fleet_outbox_depth_max gauge",
        *(
            f'vitalgate_fleet_outbox_depth_max{{clinic_id="{g.clinic_id}"}} {g.outbox_depth_max}'
            for g in gauges
        ),
        "# HELP vitalgate_fleet_unbound_readings Readings a clinic's gateways keep aside, attributed to nobody.",
        "# TYPE vitalgate_fleet_unbound_readings gauge",
        *(
            f'vitalgate_fleet_unbound_readings{{clinic_id="{g.clinic_id}"}} {g.unbound_readings}'
            for g in gauges
        ),
    ]
    return "\n".join(lines) + "\n"
