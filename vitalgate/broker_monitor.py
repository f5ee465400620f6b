"""The clinic's watch over its MQTT broker: messages it dropped, clients connected, logins it refused.

Mosquitto acknowledges a QoS 1 message and may then drop it when a client's queue is full
(`max_queued_messages` / `max_queued_bytes`); the only signs are a log line and the counter
`$SYS/broker/publish/messages/dropped` (reliability.md §0.2 and §1.2, Mosquitto src/database.c).
Readings are not lost by it (each gateway keeps a reading until the application ack and sends it
again, DESIGN.md, Delivery), but they are late, and a queue that overflows means ingest is away or
too slow: the clinic staff must hear of it.

What this reads, with the clinic account (role `vitalgate-clinic`, which may read `$SYS/#`):

- `$SYS/broker/publish/messages/dropped` (the broker's running total since it started) and
  `$SYS/broker/clients/connected`, both republished every `sys_interval` (deploy/mosquitto:
  10 s);
- the broker's notice-level log on `$SYS/broker/log/N` (`log_dest topic` in deploy/mosquitto):
  "Outgoing messages are being dropped for client <id>." names whose queue overflowed; "Client
  <id> disconnected, not authorised." is a refused login (a wrong or disabled gateway password, a
  certificate without an account); "... disconnected due to oversize packet." a packet above
  `max_packet_size`; "ACL denying access to client with dangerous ..." an id or username with
  `+` or `#`.

What Mosquitto 2.0 does not report anywhere but its own debug log: a refused PUBLISH ("Denied
PUBLISH from ...", debug level only, src/handle_publish.c) and a refused SUBSCRIBE (no log line at
all at 2.0.11, src/handle_subscribe.c; the client gets reason code 0x87). $SYS has no counter of
denials in 2.0 (src/sys_tree.c). Turning on `log_type debug` would log every message, so they are
not counted here; the broker still refuses them (docs/broker.md), and the dynamic security plugin's
answers to the clinic's own account commands are checked where they are sent
(vitalgate/broker_accounts.py).

Exported on /metrics (Prometheus text 0.0.4, counts and client ids only: client ids are gateway ids
and clinic service names, never personal data). On a rise of the dropped counter, where an alert
engine runs, the operational rule OPS-BROKER-DROPS fires for the patients whose readings are late:
those of the gateway whose queue overflowed, or, when it was a clinic service's (ingest's), every
patient measuring through an active gateway, as a broker outage shows as OPS-GW-OFFLINE for each of
them. It goes to the clinic staff only (alerts.catalogue, Audience.CLINIC_STAFF), one alert per
patient per episode, and clears once no message has been dropped for `drop_clear_after`. The
counter is the broker's since it started: the first value a monitor sees is its starting point, so
a restart of the clinic service does not raise an alert for drops it has already reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session, sessionmaker

from alerts.catalogue import RULES
from alerts.engine import AlertEngine
from alerts.lifecycle import Change
from alerts.model import Outcome, OutcomeStatus
from storage.clinic.fleet import GatewayWatch, fleet_watches
from vitalgate.fleet import FleetConfig
from vitalgate.settings import Settings
from vitals.mqtt_link import build_client, connect_async

logger = logging.getLogger(__name__)

BROKER_DROPS: Final = "OPS-BROKER-DROPS"
DROPPED_TOPIC: Final = "$SYS/broker/publish/messages/dropped"
CONNECTED_TOPIC: Final = "$SYS/broker/clients/connected"
NOTICE_LOG_TOPIC: Final = "$SYS/broker/log/N"
TOPICS: Final = (DROPPED_TOPIC, CONNECTED_TOPIC, NOTICE_LOG_TOPIC)
QOS_AT_LEAST_ONCE: Final = 1

# Mosquitto 2.0's notice-level log lines (src/database.c, src/loop.c, src/security.c), after the
# timestamp it puts first ("1700000000: ...").
_DROPPING: Final = re.compile(r"Outgoing messages are being dropped for client (?P<client>\S+)\.$")
_NOT_AUTHORISED: Final = re.compile(r"Client (?P<client>\S+) disconnected, not authorised\.$")
_OVERSIZE: Final = re.compile(r"Client (?P<client>\S+) disconnected due to oversize (packet|payload)\.$")
_DANGEROUS: Final = re.compile(r"ACL denying access to client with dangerous (username|client id)")


@dataclass(frozen=True, slots=True)
class BrokerMonitorConfig:
    connection: FleetConfig  # the clinic account the fleet service reads gateway status with
    drop_clear_after: timedelta = timedelta(minutes=30)
    check_interval_s: float = 10.0
    client_id: str = field(default_factory=lambda: f"vitalgate-broker-monitor-{secrets.token_hex(4)}")


@dataclass(slots=True)
class BrokerCounts:
    """What the monitor has seen of the broker since it started."""

    dropped_total: int | None = None  # the broker's running total, as last published
    dropped_seen: int = 0  # messages dropped while this monitor watched
    clients_connected: int | None = None
    logins_refused: int = 0
    oversize_disconnects: int = 0
    dangerous_ids_refused: int = 0
    dropping_clients: Counter[str] = field(default_factory=Counter)  # log lines per client id
    last_drop_at: datetime | None = None
    episode_started_at: datetime | None = None


def monitor_config(settings: Settings, connection: FleetConfig | None) -> BrokerMonitorConfig | None:
    """The monitor's configuration, on the fleet service's clinic account (None: no account, or off)."""
    m = settings.broker_monitor
    if connection is None or not m.enabled:
        return None
    return BrokerMonitorConfig(
        connection,
        drop_clear_after=timedelta(seconds=m.drop_clear_after_s),
        check_interval_s=m.check_interval_s,
    )


class BrokerMonitor:
    def __init__(
        self,
        config: BrokerMonitorConfig,
        sessions: sessionmaker[Session],
        *,
        engine: AlertEngine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.engine = engine
        self.clock = clock
        self.counts = BrokerCounts()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._connected = False
        self._drops = asyncio.Event()
        self._alerted_at_seen = 0  # dropped_seen when the rule last fired
        # Quiet since when, before this monitor has seen a drop: it started knowing nothing of the
        # broker's past, so an alert a previous run opened is cleared only after a quiet
        # `drop_clear_after` seen by this one (a restart of the clinic process clears nothing).
        self._watching_since = clock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link = config.connection.link_config(client_id=config.client_id, tcp_nodelay=False)
        self._client = build_client(self._link)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.error("broker monitor: the broker refused the connection", extra={"reason": str(reason)})
            return
        with self._lock:
            self._connected = True
        client.subscribe([(topic, QOS_AT_LEAST_ONCE) for topic in TOPICS])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        refused = [topic for topic, r in zip(TOPICS, reasons, strict=False) if r.is_failure]
        if refused:
            logger.error(
                "broker monitor: the broker refused $SYS topics; the clinic account needs read access to $SYS/#",
                extra={"topics": refused},
            )
            return
        self.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        self.subscribed.clear()
        with self._lock:
            self._connected = False
        if self._loop is not None:
            logger.warning("broker monitor: broker connection lost", extra={"reason": str(reason)})

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        text = bytes(message.payload).decode("utf-8", "replace").strip()
        if message.topic == DROPPED_TOPIC:
            self._dropped_total(text)
        elif message.topic == CONNECTED_TOPIC:
            with contextlib.suppress(ValueError), self._lock:
                self.counts.clients_connected = int(text)
        elif message.topic == NOTICE_LOG_TOPIC:
            self._log_line(text)

    def _dropped_total(self, text: str) -> None:
        try:
            total = int(text)
        except ValueError:
            return
        with self._lock:
            previous, self.counts.dropped_total = self.counts.dropped_total, total
            rise = 0 if previous is None else max(0, total - previous)  # a restarted broker counts from 0
            if rise:
                self.counts.dropped_seen += rise
                now = self.clock()
                self.counts.last_drop_at = now
                self.counts.episode_started_at = self.counts.episode_started_at or now
        if rise:
            logger.error(
                "the broker dropped messages: queues are full (readings are late until gateways resend)",
                extra={"dropped": rise, "dropped_total": total},
            )
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._drops.set)

    def _log_line(self, line: str) -> None:
        line = line.split(": ", 1)[-1]  # after the broker's timestamp
        with self._lock:
            if m := _DROPPING.search(line):
                self.counts.dropping_clients[m["client"]] += 1
                logger.warning("broker: dropping messages for a client", extra={"client_id": m["client"]})
            elif _NOT_AUTHORISED.search(line):
                self.counts.logins_refused += 1
            elif _OVERSIZE.search(line):
                self.counts.oversize_disconnects += 1
            elif _DANGEROUS.search(line):
                self.counts.dangerous_ids_refused += 1

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
        """Until `stop`: apply the alert rule at once on a drop, and every check interval (to clear)."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                logger.exception("broker monitor check failed; tried again at the next interval")
            self._drops.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._drops.wait())]
            try:
                await asyncio.wait(
                    waits, timeout=self.config.check_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waits:
                    w.cancel()

    # -- the operational rule --------------------------------------------------------------------

    async def check(self) -> list[Change]:
        """OPS-BROKER-DROPS for the patients whose readings new drops delay; cleared for everyone
        once the broker has dropped nothing for `drop_clear_after`."""
        engine = self.engine
        if engine is None:
            return []
        now = self.clock()
        with self._lock:
            last_drop, started = self.counts.last_drop_at, self.counts.episode_started_at
            clients = set(self.counts.dropping_clients)
            dropped = self.counts.dropped_seen
        outcomes: dict[str, list[Outcome]] = {}
        quiet_since = last_drop if last_drop is not None else self._watching_since
        if now - quiet_since >= self.config.drop_clear_after:
            if started is not None:
                # The episode ends. Outside an episode the names are kept: the broker logs whose queue
                # overflows before $SYS publishes the rise of its counter (every sys_interval), and
                # that name decides which patients the episode's alert is for.
                with self._lock:
                    if self.counts.episode_started_at == started:
                        self.counts.episode_started_at = None
                        self.counts.dropping_clients.clear()
            open_alerts = await asyncio.to_thread(engine.repo.unresolved, None)
            for patient_id in sorted({a.patient_id for a in open_alerts if a.rule_id == BROKER_DROPS}):
                outcomes[patient_id] = [
                    Outcome(rule_id=BROKER_DROPS, patient_id=patient_id, status=OutcomeStatus.CLEAR)
                ]
        elif dropped > self._alerted_at_seen:
            assert started is not None
            self._alerted_at_seen = dropped
            watches = await asyncio.to_thread(self._watches)
            gateways = {w.gateway_id for w in watches}
            named = clients & gateways
            affected = (
                [w for w in watches if w.gateway_id in named] if named and named == clients else watches
            )
            for patient_id in sorted({p for w in affected for p in w.patient_ids}):
                outcomes[patient_id] = [
                    Outcome(
                        rule_id=BROKER_DROPS,
                        patient_id=patient_id,
                        status=OutcomeStatus.FIRING,
                        severity=RULES[BROKER_DROPS].severity,
                        values={"dropped_messages": dropped, "since": started.isoformat()},
                        episode_key=f"broker-drops|{started.isoformat()}",
                    )
                ]
        return await engine.apply_outcomes(outcomes, now) if outcomes else []

    def _watches(self) -> list[GatewayWatch]:
        with self.sessions() as session:
            return fleet_watches(session)

    # -- metrics ---------------------------------------------------------------------------------

    def prometheus_text(self) -> str:
        """The broker's figures as last seen (Prometheus text exposition 0.0.4)."""
        with self._lock:
            c = self.counts
            rows = [
                ("vitalgate_broker_monitor_connected", "gauge", "1 while the monitor reads the broker's $SYS topics",
                 int(self._connected and self.subscribed.is_set())),
                ("vitalgate_broker_messages_dropped_total", "counter",
                 "messages the broker dropped (full queues) since it started, as it last reported", c.dropped_total),
                ("vitalgate_broker_messages_dropped_seen_total", "counter",
                 "messages the broker dropped while this monitor watched", c.dropped_seen),
                ("vitalgate_broker_clients_connected", "gauge", "clients connected to the broker", c.clients_connected),
                ("vitalgate_broker_logins_refused_total", "counter",
                 "connections the broker refused as not authorised (its log)", c.logins_refused),
                ("vitalgate_broker_oversize_disconnects_total", "counter",
                 "clients disconnected for a packet above max_packet_size (its log)", c.oversize_disconnects),
                ("vitalgate_broker_dangerous_ids_refused_total", "counter",
                 "clients refused for + or # in their id or username (its log)", c.dangerous_ids_refused),
            ]  # fmt: skip
            dropping = sorted(c.dropping_clients.items())
        lines: list[str] = []
        for name, kind, help_text, value in rows:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            if value is not None:
                lines.append(f"{name} {value}")
        name = "vitalgate_broker_dropping_client_episodes_total"
        lines += [
            f"# HELP {name} times the broker began dropping a client's messages",
            f"# TYPE {name} counter",
        ]
        lines += [f'{name}{{client_id="{client}"}} {count}' for client, count in dropping]
        return "\n".join(lines) + "\n"
