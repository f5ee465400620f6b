"""MQTT uplink: paho-mqtt 2.x, MQTT v5, TLS, per-gateway credentials, QoS 1.

Two parts:
- :class:`MqttUplink` owns the paho client. paho runs its network loop in its own thread
  (``loop_start``) and calls our callbacks there; a slow callback would block keepalive
  (reliability.md §1.3, paho#379), so every callback only hands its event to the asyncio loop with
  ``loop.call_soon_threadsafe`` and returns.
- :class:`Forwarder` moves readings from the outbox to the broker in
  :class:`vitals.payload.ReadingsBatch` messages and deletes them when the clinic's application ack
  arrives on ``acks``. Unacked readings are resent after ``ack_timeout_s`` and on every reconnect.
  A PUBACK proves nothing about durability (reliability.md §0 item 1, mosquitto#1855), and paho keeps
  its session in memory only (§0 item 4), so the outbox, not paho, is the source of truth.

The last will is a retained :class:`vitals.payload.GatewayStatus` with ``online: false`` on the
``status`` topic; a clean stop publishes the same explicitly (a normal DISCONNECT sends no will).
The uplink never sets a Message Expiry Interval: expiry is a deliberate way to lose data
(reliability.md §1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from gateway.outbox import Outbox, OutboxWriteError, PendingReading
from vitals.mqtt_link import LinkConfig, TlsParameters, Will, build_client, connect_async
from vitals.payload import MAX_READINGS_PER_BATCH, GatewayConfig, GatewayStatus, ReadingsAck, ReadingsBatch
from vitals.topics import acks_topic, config_topic, readings_topic, status_topic

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE = 1
# A persistent MQTT session keeps acks the clinic published while the gateway was away (paho's
# default clean_start discards the session on restart, reliability.md §0 item 3).
SESSION_EXPIRY_S = 7 * 24 * 3600


class UplinkError(Exception):
    """The uplink could not do what was asked."""


class UplinkNotConnectedError(UplinkError):
    """A publish was attempted while the broker connection is down."""


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    gateway_id: str
    host: str
    port: int = 8883
    username: str | None = None
    password: str | None = None
    tls_ca_file: Path | None = None
    tls_ca_pem: str | None = None  # the CA certificate itself, as a provisioning file carries it
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls: bool | None = None  # None: TLS exactly when a CA (file or PEM) is given
    # Unencrypted MQTT only when asked for: a broker on this machine or a development broker.
    allow_plain_mqtt: bool = False
    client_id: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    session_expiry_s: int = SESSION_EXPIRY_S

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"vitalgate-gw-{self.gateway_id}"

    @property
    def use_tls(self) -> bool:
        if self.tls is not None:
            return self.tls
        return self.tls_ca_file is not None or self.tls_ca_pem is not None

    def link_config(self, will: Will | None = None) -> LinkConfig:
        """The broker connection: a persistent session under the gateway's client id; TLS verifies
        the broker against the configured CA (file or PEM), or the system's trust store when
        neither is set (reliability.md §2)."""
        tls = (
            TlsParameters(
                ca_file=self.tls_ca_file,
                ca_pem=self.tls_ca_pem,
                cert_file=self.tls_cert_file,
                key_file=self.tls_key_file,
            )
            if self.use_tls
            else None
        )
        return LinkConfig(
            host=self.host,
            port=self.port,
            client_id=self.effective_client_id,
            username=self.username,
            password=self.password,
            tls=tls,
            keepalive_s=self.keepalive_s,
            clean_start=False,
            session_expiry_s=self.session_expiry_s,
            will=will,
            connect_timeout_s=self.connect_timeout_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s,
        )


class PlainMqttRefusedError(UplinkError):
    """No TLS configured and plain MQTT not allowed: readings would cross the network in clear."""


MessageHandler = Callable[[bytes], Coroutine[Any, Any, None]]


class MqttUplink:
    """The paho client, bridged to asyncio. Create and use it from inside a running event loop."""

    def __init__(self, config: UplinkConfig, *, will: GatewayStatus | None = None) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._connect_listeners: list[Callable[[], None]] = []
        self._handlers: dict[str, MessageHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.connect_count = 0
        self.last_error: str | None = None
        if not config.use_tls and not config.allow_plain_mqtt:
            raise PlainMqttRefusedError(
                "refusing unencrypted MQTT: set mqtt.tls_ca_file or mqtt.tls_ca_pem (or mqtt.tls), or "
                "mqtt.allow_plain_mqtt for a broker on this machine or a development broker"
            )
        self.link = config.link_config(
            None
            if will is None
            else Will(
                topic=status_topic(config.gateway_id),
                payload=will.model_dump_json(),
                qos=QOS_AT_LEAST_ONCE,
                retain=True,
            )
        )
        self._client = build_client(self.link)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail
        self._started = False
        self._subscriptions: list[str] = []
        self._sub_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Register a handler; subscriptions are (re)made on every connect."""
        with self._sub_lock:
            self._handlers[topic] = handler
            self._subscriptions.append(topic)

    def on_connected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` in the event loop after every successful (re)connect."""
        self._connect_listeners.append(listener)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        connect_async(self._client, self.link)
        self._client.loop_start()
        self._started = True

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def stop(self, *, final_status: GatewayStatus | None = None, timeout_s: float = 5.0) -> None:
        """Publish ``final_status`` (retained) if connected, disconnect, stop paho's thread."""
        if not self._started:
            return
        if final_status is not None and self.connected:
            info = self._client.publish(
                status_topic(self.config.gateway_id),
                final_status.model_dump_json(),
                qos=QOS_AT_LEAST_ONCE,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(info.wait_for_publish, timeout_s)
        self._started = False  # a disconnect from here on is ours, not a fault
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._connected.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Queue a QoS 1 publish. Raises :class:`UplinkNotConnectedError` when offline.

        paho's ``publish`` is thread-safe and never waits for the network; delivery is confirmed by
        the application ack, not here.
        """
        if not self.connected:
            raise UplinkNotConnectedError("broker connection is down")
        info = self._client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # paho keeps a QoS 1 message and sends it after reconnecting (reliability.md §1.3);
            # the forwarder resends on reconnect anyway, and ingest is idempotent on reading_id.
            raise UplinkNotConnectedError("broker connection dropped during publish")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise UplinkError(f"publish failed: {mqtt.error_string(info.rc)}")

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _call_in_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(callback, *args)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._call_in_loop(self._record_error, f"connect refused: {reason_code}")
            return
        with self._sub_lock:
            topics = list(self._subscriptions)
        if topics:
            client.subscribe([(topic, QOS_AT_LEAST_ONCE) for topic in topics])
        self._call_in_loop(self._connected_in_loop)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._call_in_loop(self._disconnected_in_loop, str(reason_code))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._call_in_loop(self._record_error, "broker unreachable")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._call_in_loop(self._dispatch, message.topic, bytes(message.payload))

    # -- in the event loop -----------------------------------------------------------------------

    def _record_error(self, error: str) -> None:
        if error != self.last_error:
            logger.warning("mqtt: %s", error, extra={"gateway_id": self.config.gateway_id})
        self.last_error = error

    def _connected_in_loop(self) -> None:
        self.connect_count += 1
        self._connected.set()
        logger.info(
            "mqtt connected",
            extra={"gateway_id": self.config.gateway_id, "connect_count": self.connect_count},
        )
        for listener in self._connect_listeners:
            listener()

    def _disconnected_in_loop(self, reason: str) -> None:
        if self._connected.is_set() and self._started:
            logger.warning(
                "mqtt disconnected", extra={"gateway_id": self.config.gateway_id, "reason": reason}
            )
        self._connected.clear()

    def _dispatch(self, topic: str, payload: bytes) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            logger.warning("mqtt message on an unexpected topic ignored", extra={"topic": topic})
            return
        task = asyncio.get_running_loop().create_task(handler(payload))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("mqtt message handler failed", exc_info=task.exception())


@dataclass(frozen=True, slots=True)
class ForwarderConfig:
    ack_timeout_s: float = 30.0
    batch_size: int = 100
    max_in_flight: int = 2_000  # readings sent and not yet acked (nor timed out)
    idle_poll_s: float = 5.0


class Forwarder:
    """Sends what the outbox holds and deletes it on the application ack."""

    def __init__(
        self,
        gateway_id: str,
        outbox: Outbox,
        uplink: MqttUplink,
        config: ForwarderConfig = ForwarderConfig(),
        *,
        on_config: Callable[[GatewayConfig], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= config.batch_size <= MAX_READINGS_PER_BATCH:
            raise ValueError(f"batch_size must be within 1..{MAX_READINGS_PER_BATCH}")
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.uplink = uplink
        self.config = config
        self._on_config = on_config
        self._clock = clock
        self._wake = asyncio.Event()
        self._in_flight: dict[str, float] = {}  # reading_id -> sent at (this session's view)
        self.batches_sent = 0
        self.readings_sent = 0
        self.readings_acked = 0
        uplink.subscribe(acks_topic(gateway_id), self._handle_ack)
        uplink.subscribe(config_topic(gateway_id), self._handle_config)
        uplink.on_connected(self._reconnected)

    def wake(self) -> None:
        """Something changed (new commit, ack, reconnect): look at the outbox now."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if self.uplink.connected:
                sent = await self._send_due()
                if sent:
                    continue  # more may be due; the in-flight window decides
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        timeout = self.config.idle_poll_s
        if self.uplink.connected:
            next_due = await asyncio.to_thread(
                self.outbox.next_due_at, ack_timeout_s=self.config.ack_timeout_s
            )
            if next_due is not None:
                timeout = min(timeout, max(0.05, next_due - self._clock()))
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that arrives
        # as the forwarder is woken (CPython gh-86296), and the gateway would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _window(self) -> int:
        cutoff = self._clock() - self.config.ack_timeout_s
        for rid in [rid for rid, sent in self._in_flight.items() if sent <= cutoff]:
            del self._in_flight[rid]
        return self.config.max_in_flight - len(self._in_flight)

    async def _send_due(self) -> int:
        room = self._window()
        if room <= 0:
            return 0
        due = await asyncio.to_thread(
            self.outbox.due, ack_timeout_s=self.config.ack_timeout_s, limit=min(room, self.config.batch_size)
        )
        # Readings already in flight in this session wait for their ack or the timeout, even when the
        # outbox could not record that they were sent (a full disk).
        due = [p for p in due if p.reading_id not in self._in_flight]
        if not due:
            return 0
        payload = self._batch_json(due)
        try:
            self.uplink.publish(readings_topic(self.gateway_id), payload)
        except UplinkNotConnectedError:
            return 0
        ids = [p.reading_id for p in due]
        try:
            await asyncio.to_thread(self.outbox.mark_sent, ids)
        except OutboxWriteError as exc:
            # Only the resend schedule is lost; the readings stay held until their ack.
            logger.error(
                "could not record readings as sent", extra={"gateway_id": self.gateway_id, "error": str(exc)}
            )
        now = self._clock()
        for rid in ids:
            self._in_flight[rid] = now
        self.batches_sent += 1
        self.readings_sent += len(ids)
        resent = sum(1 for p in due if p.send_count > 0)
        logger.debug(
            "readings batch published",
            extra={"gateway_id": self.gateway_id, "readings": len(ids), "resent": resent},
        )
        return len(ids)

    def _batch_json(self, due: list[PendingReading]) -> str:
        batch = ReadingsBatch(
            gateway_id=self.gateway_id,
            sent_at=datetime.now(UTC),
            readings=tuple(p.reading() for p in due),
        )
        return batch.model_dump_json()

    def _reconnected(self) -> None:
        # Resend everything unacked on reconnect: what was in flight may be lost anywhere.
        self._in_flight.clear()
        task = asyncio.get_running_loop().create_task(self._mark_all_unsent())
        task.add_done_callback(_log_failure)

    async def _mark_all_unsent(self) -> None:
        count = await asyncio.to_thread(self.outbox.mark_all_unsent)
        if count:
            logger.info("resending unacked readings after reconnect", extra={"readings": count})
        self.wake()

    async def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = ReadingsAck.model_validate_json(payload)
        except ValidationError as exc:
            logger.error(
                "malformed ack ignored", extra={"gateway_id": self.gateway_id, "errors": exc.error_count()}
            )
            return
        if ack.gateway_id != self.gateway_id:
            logger.error("ack for another gateway ignored", extra={"ack_gateway_id": ack.gateway_id})
            return
        result = await asyncio.to_thread(self.outbox.acknowledge, ack.stored, ack.rejected)
        for rid in ack.stored:
            self._in_flight.pop(rid, None)
        for entry in ack.rejected:
            self._in_flight.pop(entry.reading_id, None)
        self.readings_acked += result.deleted
        self.wake()

    async def _handle_config(self, payload: bytes) -> None:
        if not payload:
            return  # retained config cleared
        try:
            config = GatewayConfig.model_validate_json(payload)
        except ValidationError as exc:
            logger.error(
                "malformed gateway config ignored",
                extra={"gateway_id": self.gateway_id, "errors": exc.error_count()},
            )
            return
        if config.gateway_id != self.gateway_id:
            logger.error("config for another gateway ignored", extra={"config_gateway_id": config.gateway_id})
            return
        if self._on_config is not None:
            await self._on_config(config)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("uplink task failed", exc_info=task.exception())
