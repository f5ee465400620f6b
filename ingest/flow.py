"""Flow control: the messages ingest holds unacked, from paho's `on_message` to their PUBACK.

Receive Maximum bounds what the broker sends unacked, hence what ingest holds: when the store is
down the worker retries with backoff and acks nothing, the broker stops at that bound, and nothing
is lost (reliability.md §(a) 6). While acks flow, Mosquitto 2.0.11 sends past it
(`IngestConfig.receive_maximum`; the bench prints what ingest held), so ingest bounds itself too:
past `max_held_bytes` of payloads held unacked it takes no more messages on this connection (they
stay unacked at the broker), finishes and acks what it holds, then reconnects, and the broker sends
the rest again on the resumed session ([MQTT-4.4.0-1]).

A cycle may wait up to `cycle_fill_s` for more messages when the queue is shallow, so one commit
(fsync) and one application ack cover more messages; it stops waiting as soon as the cycle is full
or every message the broker may send (Receive Maximum) is already held.

Each message is stamped with the connection it arrived on: a connection ends, and what was received
on it may no longer be acked (ingest.ack_window); copies not yet taken into a cycle are dropped,
since the broker sends them again on the resumed session.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from ingest.ack_window import Delivery
from ingest.config import IngestConfig
from ingest.metrics import HeldNow, IngestMetrics
from ingest.validation import InboundMessage

logger = logging.getLogger(__name__)

# How long the worker waits for a first message before it looks at everything else again.
_QUEUE_POLL_S: Final = 0.2
# Past max_held_bytes, how long the worker lets paho's last writes leave before ending the connection.
_RENEW_SETTLE_S: Final = 0.05


class FlowControl:
    """What ingest holds: the queue paho fills and the worker empties, the messages and payload
    bytes received and not yet acked, and the connection they arrived on.

    `receive`, `connected` and `disconnected` run on paho's network thread; `take_cycle`,
    `renew_connection_if_deferred`, `is_stale` and `forget` on the worker; `current_generation`,
    `ack` and `released` (the ack window's `AckSink`) on either."""

    def __init__(self, config: IngestConfig, client: mqtt.Client, metrics: IngestMetrics) -> None:
        self._config = config
        self._client = client
        self._metrics = metrics
        self._queue: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards every field below; held for no call out
        self._generation = 0  # changes with every connect and disconnect
        self._connected = False
        self._in_flight = 0
        self._held_bytes = 0
        self._held_bytes_peak = 0
        # Past max_held_bytes: messages of this connection are left unacked until it is renewed.
        self._deferring = False
        self._renewing = False  # the connection was ended on purpose: not an error

    def held_now(self) -> HeldNow:
        with self._lock:
            return HeldNow(self._connected, self._in_flight, self._held_bytes, self._held_bytes_peak)

    # -- paho's network thread ---------------------------------------------------------------------

    def connected(self) -> None:
        with self._lock:
            self._generation += 1
            self._connected = True
            self._deferring = False  # the broker sends what was deferred again on this connection

    def disconnected(self) -> bool:
        """The connection ended: nothing received on it may be acked any more, and the copies not
        yet taken are dropped (the broker redelivers them). True when it was ended on purpose."""
        with self._lock:
            self._connected = False
            self._generation += 1
            renewing, self._renewing = self._renewing, False
        dropped = dropped_bytes = 0
        with contextlib.suppress(queue.Empty):
            while True:
                dropped_bytes += len(self._queue.get_nowait().payload)
                dropped += 1
        if dropped:
            self._release(dropped, dropped_bytes)
        return renewing

    def receive(self, message: mqtt.MQTTMessage) -> None:
        """Take a message for the worker, or, past `max_held_bytes`, leave it unacked to the broker."""
        size = len(message.payload)
        with self._lock:
            was_deferring = self._deferring
            # QoS 0 is never sent again, so it is never left to the broker.
            defer = message.qos > 0 and (
                was_deferring
                or (self._in_flight > 0 and self._held_bytes + size > self._config.max_held_bytes)
            )
            if defer:
                # Left unacked: the broker keeps it and sends it again after the reconnect that
                # `renew_connection_if_deferred` makes once everything held is acked.
                self._deferring = True
            else:
                generation = self._generation
                self._in_flight += 1
                self._held_bytes += size
                self._held_bytes_peak = max(self._held_bytes_peak, self._held_bytes)
        if defer:
            self._metrics.count_deferred()
            if not was_deferring:
                logger.warning(
                    "ingest holds max_held_bytes unacked; later messages are left to the broker",
                    extra={"max_held_bytes": self._config.max_held_bytes},
                )
            return
        self._metrics.count_received()
        self._queue.put(
            InboundMessage(
                mid=message.mid,
                qos=message.qos,
                topic=message.topic,
                payload=bytes(message.payload),
                received_at=datetime.now(UTC),
                generation=generation,
            )
        )

    # -- the worker --------------------------------------------------------------------------------

    def take_cycle(self, *, wait: bool = True) -> list[InboundMessage]:
        """Up to a cycle's worth of queued messages; `wait`: wait for the first (and, with
        `cycle_fill_s`, for more), else take only what is already here."""
        try:
            first = self._queue.get(timeout=_QUEUE_POLL_S) if wait else self._queue.get_nowait()
        except queue.Empty:
            return []
        messages = [first]
        size = len(first.payload)
        cfg = self._config
        fill_until = time.monotonic() + (cfg.cycle_fill_s if wait else 0.0)
        # Payload bytes bound one transaction without parsing first (a reading is ~0.5 kB of JSON).
        while len(messages) < cfg.max_messages_per_cycle and size < cfg.max_cycle_bytes:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                # Shallow queue: wait briefly for more, unless the broker may send nothing more
                # (everything it may have unacked, Receive Maximum, is already here).
                remaining = fill_until - time.monotonic()
                if remaining <= 0 or self._in_flight >= cfg.receive_maximum:
                    break
                try:
                    message = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            messages.append(message)
            size += len(message.payload)
        return messages

    def is_stale(self, messages: Sequence[InboundMessage]) -> bool:
        """Did any of these arrive on a connection that has ended since?"""
        with self._lock:
            return any(m.generation != self._generation for m in messages)

    def forget(self, messages: Sequence[InboundMessage]) -> None:
        """Messages of an ended connection, left to the broker: no longer held."""
        self._release(len(messages), sum(len(m.payload) for m in messages))

    def renew_connection_if_deferred(self) -> None:
        """Messages were left unacked past max_held_bytes: once everything held is acked and the
        PUBACKs are out, end the connection. paho reconnects (after reconnect_min_s) to the same
        session, and the broker sends every unacked message again ([MQTT-4.4.0-1])."""

        def ready() -> bool:
            with self._lock:
                idle = self._deferring and not self._in_flight and self._connected and not self._renewing
            return idle and not self._client.want_write()  # acks still queued in paho go out first

        if not ready():
            return
        # paho pops a packet before writing it: give the last PUBACK time to leave, then look again.
        time.sleep(_RENEW_SETTLE_S)
        sock = self._client.socket()
        if not ready() or not isinstance(sock, socket.socket):  # TCP, or TLS (an ssl.SSLSocket)
            return
        logger.info("ingest renews its connection to receive the messages it left to the broker")
        with self._lock:
            self._renewing = True
        try:
            # Only our sending side, and through the plain socket: SSLSocket.shutdown would drop the
            # TLS state under paho's network thread mid-read, and a shut reading side would make the
            # kernel answer the broker's next message with a reset that discards our last acks.
            # The broker sees the end of our stream and closes; paho reads that and reconnects.
            socket.socket.shutdown(sock, socket.SHUT_WR)
        except OSError:
            with self._lock:
                self._renewing = False  # already closing: paho reconnects on its own, or we retry

    # -- the ack window's sink (ingest.ack_window.AckSink) -----------------------------------------

    def current_generation(self) -> int:
        with self._lock:
            return self._generation

    def ack(self, mid: int, qos: int) -> bool:
        return self._client.ack(mid, qos) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def released(self, deliveries: Sequence[Delivery], acked: int) -> None:
        self._release(len(deliveries), sum(delivery.size for delivery in deliveries))
        self._metrics.count_acked(acked)

    def _release(self, messages: int, size: int) -> None:
        with self._lock:
            self._in_flight -= messages
            self._held_bytes -= size
