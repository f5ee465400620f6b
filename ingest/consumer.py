"""The ingest consumer: MQTT v5 in, reading store out, acks only after commit.

Threads (reliability.md §1.3: paho callbacks run on its network thread, and a slow `on_message`
blocks keepalive, paho#379/#328):
- paho's network thread (`loop_start`) only puts each PUBLISH on a queue and returns;
- one worker thread takes up to `max_messages_per_cycle` messages, runs the pipeline (validate,
  bindings, one store transaction, dead letters), and only then acks them in arrival order
  (PUBACKs must follow PUBLISH order, [MQTT-4.6.0-2], reliability.md §1.1);
- or, with a `PipelineProcess` (what `vitalgate ingest` runs), the pipeline runs in a child
  process and the worker only hands cycles over (three at a time) and acks the answers in order,
  so this process's GIL is left to paho (ingest.pipeline_process).

Delivery:
- persistent session: `clean_start=False`, Session Expiry > 0, a stable client id
  (reliability.md §0 item 3); QoS 1; `manual_ack=True`, so paho sends no PUBACK until `ack(mid)`
  (§1.3, paho#753);
- Receive Maximum bounds what the broker sends unacked, hence what ingest holds: when the store is
  down the worker retries with backoff and acks nothing, the broker stops at that bound, and
  nothing is lost (reliability.md §(a) 6). While acks flow, Mosquitto 2.0.11 sends past it
  (`IngestConfig.receive_maximum`; the bench prints what ingest held), so ingest bounds itself too:
  past `max_held_bytes` of payloads held unacked it takes no more messages on this connection
  (they stay unacked at the broker), finishes and acks what it holds, then reconnects, and the
  broker sends the rest again on the resumed session ([MQTT-4.4.0-1]);
- per cycle: commit -> publish the application ack (`ReadingsAck`, QoS 1) -> once the broker has
  PUBACKed that ack, PUBACK the readings messages. A crash anywhere before the PUBACK means the
  broker redelivers on reconnect, the store reports duplicates, and the ack is sent again; a crash
  after it finds the application ack already at the broker. (Waiting for the application ack's own
  PUBACK, not only for the commit, closes the window where a stored reading's message is acked but
  its application ack dies with the process.)
- that wait is pipelined, not synchronous: the worker hands the committed cycle to an "awaiting"
  window and goes on with the next cycle; paho's `on_publish` for the application ack (network
  thread) sends the cycle's MQTT acks, cycles strictly in commit order. At most
  `max_cycles_awaiting_ack` cycles wait; the worker blocks beyond that. A cycle whose application
  ack is not PUBACKed within `ack_publish_timeout_s` is acked anyway (the readings are committed,
  the ack stays queued in paho, and holding the slot would stall the stream). A synchronous wait
  would cost a broker round trip per cycle: most of a small cycle's time.
- a cycle may wait up to `cycle_fill_s` for more messages when the queue is shallow, so one
  commit (fsync) and one application ack cover more messages; it stops waiting as soon as the
  cycle is full or every message the broker may send (Receive Maximum) is already held.
- a message that arrived on an earlier connection is never acked on a later one: its packet id may
  have been reused after the broker's redelivery (MQTT-4.4.0-1 resends with the same ids).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.config import IngestConfig
from ingest.pipeline import ClinicAccess, CycleProcessor, CycleResult, IngestPipeline
from ingest.pipeline_process import PipelineProcess, PipelineProcessDied, PipelineProcessError
from ingest.validation import InboundMessage
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import DeadLetterRecord
from storage.readings.protocol import AnyReading, ReadingStore, ReadingStoreUnavailable
from vitals.mqtt_link import build_client, connect_async
from vitals.topics import acks_topic

logger = logging.getLogger(__name__)

# Unexpected failures of one cycle before its messages are tried one by one (and a message that
# still fails alone is dead-lettered): one payload that trips a bug must not stall the stream.
ISOLATE_AFTER_FAILURES = 3

QOS_AT_LEAST_ONCE: Final = 1
_QUEUE_POLL_S: Final = 0.2
# Cycles handed to a pipeline process before the oldest one's answer is read (_work_overlapped):
# one being prepared and one per committer thread (ingest.pipeline_process.COMMITTERS), so the
# child is never idle while this process acks.
_CYCLES_HANDED_OVER: Final = 3
# Past max_held_bytes, how long the worker lets paho's last writes leave before ending the connection.
_RENEW_SETTLE_S: Final = 0.05
# paho's own bound on outgoing QoS 1 messages in flight (the application acks); default 20.
_OUTGOING_INFLIGHT: Final = 100

ReadingsListener = Callable[[Sequence[AnyReading]], None]
"""Called after each committed cycle with its accepted readings (new and already stored alike:
after a crash between commit and announcement, the redelivered readings are duplicates and must
still be announced; listeners are idempotent on reading_id, reliability.md §(a) 9)."""


class IngestError(RuntimeError):
    """The consumer could not start or stop as asked."""


@dataclass(slots=True)
class _AwaitingCycle:
    """A committed cycle whose MQTT acks wait for the broker's PUBACK of its application acks.

    Only what an ack needs is kept (no payloads): `deliveries` are (mid, qos, generation, payload
    size) in arrival order; `outstanding` the packet ids of application acks not yet PUBACKed."""

    deliveries: list[tuple[int, int, int, int]]
    outstanding: set[int]
    deadline: float


@dataclass(frozen=True, slots=True)
class IngestCounters:
    """Monitoring counters since start. No personal data; ids only in logs."""

    connected: bool
    connections: int
    messages_received: int
    messages_acked: int
    readings_received: int
    readings_stored: int
    readings_duplicate: int
    readings_rejected: int
    messages_dead_lettered: int
    store_retries: int
    listener_errors: int
    in_flight_messages: int
    held_bytes: int  # payload bytes of the in-flight messages
    held_bytes_peak: int  # the most held at once since start
    messages_deferred: int  # left unacked past max_held_bytes, for the broker to send again
    last_lag_s: float | None
    max_lag_s: float | None
    last_commit_at: datetime | None
    last_error: str | None

    def prometheus_text(self, prefix: str = "vitalgate_ingest") -> str:
        """The counters in Prometheus text exposition format (0.0.4); no labels, no personal data."""
        lines: list[str] = []

        def metric(name: str, kind: str, value: float | None, help_text: str) -> None:
            if value is None:
                return
            lines.append(f"# HELP {prefix}_{name} {help_text}")
            lines.append(f"# TYPE {prefix}_{name} {kind}")
            lines.append(f"{prefix}_{name} {value:g}")

        metric("connected", "gauge", int(self.connected), "1 while connected to the broker")
        metric("connections_total", "counter", self.connections, "successful broker connections")
        metric("messages_received_total", "counter", self.messages_received, "MQTT messages received")
        metric("messages_acked_total", "counter", self.messages_acked, "MQTT messages acked after commit")
        metric(
            "messages_dead_lettered_total", "counter", self.messages_dead_lettered, "payloads dead-lettered"
        )
        metric(
            "messages_deferred_total",
            "counter",
            self.messages_deferred,
            "messages left unacked past max_held_bytes, for the broker to send again",
        )
        metric("held_bytes", "gauge", self.held_bytes, "payload bytes received and not yet acked")
        metric("held_bytes_peak", "gauge", self.held_bytes_peak, "the most payload bytes held at once")
        metric("readings_received_total", "counter", self.readings_received, "readings in committed cycles")
        metric("readings_stored_total", "counter", self.readings_stored, "readings newly stored")
        metric("readings_duplicate_total", "counter", self.readings_duplicate, "readings already stored")
        metric("readings_rejected_total", "counter", self.readings_rejected, "readings rejected for good")
        metric("store_retries_total", "counter", self.store_retries, "cycles retried: store or db down")
        metric("listener_errors_total", "counter", self.listener_errors, "listener calls that raised")
        metric("in_flight_messages", "gauge", self.in_flight_messages, "messages received, not yet acked")
        metric("lag_seconds", "gauge", self.last_lag_s, "commit time minus the batch's sent_at")
        metric("max_lag_seconds", "gauge", self.max_lag_s, "largest lag since start")
        if self.last_commit_at is not None:
            metric("last_commit_timestamp_seconds", "gauge", self.last_commit_at.timestamp(), "last commit")
        return "\n".join(lines) + "\n"


class IngestConsumer:
    """Consume readings from MQTT into a `ReadingStore`.

    `start()` connects and returns; `stop()` finishes the cycle in progress (write, acks),
    disconnects and keeps the broker session, so unprocessed messages wait for the next start.
    """

    def __init__(
        self,
        config: IngestConfig,
        store: ReadingStore | None = None,
        clinic: ClinicAccess | None = None,
        *,
        pipeline: CycleProcessor | None = None,
        listeners: Sequence[ReadingsListener] = (),
    ) -> None:
        """Either `store` and `clinic` (the pipeline runs in this process), or `pipeline`: e.g. an
        `ingest.pipeline_process.PipelineProcess`, started by its owner, which keeps the per-reading
        work out of this process's GIL."""
        self.config = config
        if pipeline is None:
            if store is None or clinic is None:
                raise IngestError("give the consumer a store and a clinic database, or a pipeline")
            pipeline = IngestPipeline(store, clinic, clinic, binding_cache_ttl_s=config.binding_cache_ttl_s)
        elif store is not None or clinic is not None:
            raise IngestError("give the consumer a store and a clinic database, or a pipeline, not both")
        elif listeners and getattr(pipeline, "want_committed", True) is False:
            raise IngestError("listeners need the committed readings: build the pipeline with want_committed")
        self._pipeline: CycleProcessor = pipeline
        self._listeners = tuple(listeners)
        self._queue: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._worker: threading.Thread | None = None
        self._started = False
        # Committed cycles awaiting their application acks' PUBACK, oldest first (see module doc).
        # Lock order: paho's _out_message_mutex (held around on_publish) -> _ack_cond -> _lock.
        self._ack_cond = threading.Condition(threading.Lock())
        self._awaiting: deque[_AwaitingCycle] = deque()
        self._awaiting_by_mid: dict[int, _AwaitingCycle] = {}
        # PUBACKs that arrived before their cycle was registered, and app acks given up on.
        self._early_pubacks: set[int] = set()
        self._orphaned_mids: set[int] = set()
        # counters (updated under _lock)
        self._c = dict.fromkeys(
            (
                "connections",
                "messages_received",
                "messages_acked",
                "readings_received",
                "readings_stored",
                "readings_duplicate",
                "readings_rejected",
                "messages_dead_lettered",
                "store_retries",
                "listener_errors",
                "messages_deferred",
            ),
            0,
        )
        self._in_flight = 0
        self._held_bytes = 0
        self._held_bytes_peak = 0
        # Past max_held_bytes: messages of this connection are left unacked until it is renewed.
        self._deferring = False
        self._renewing = False  # the connection was dropped on purpose: not an error
        self._last_lag_s: float | None = None
        self._max_lag_s: float | None = None
        self._last_commit_at: datetime | None = None
        self._last_error: str | None = None
        self._link = config.link_config()
        self._client = self._make_client()

    # -- public ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise IngestError("ingest consumer already started")
        if self._stopping.is_set():
            raise IngestError("a stopped ingest consumer cannot be restarted; create a new one")
        self._started = True
        connect_async(self._client, self._link)
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        self._client.loop_start()
        logger.info(
            "ingest starting",
            extra={"client_id": self.config.client_id, "subscription": self.config.subscription},
        )

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the subscription is confirmed on the current connection."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Finish the cycle in progress, ack it, disconnect (the session stays at the broker)."""
        if not self._started:
            return
        self._stopping.set()
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            if self._worker.is_alive():
                logger.error("ingest worker did not finish within the shutdown timeout")
        self._wait_awaiting_drained(deadline)
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        logger.info("ingest stopped", extra=self._counter_extra())

    def counters(self) -> IngestCounters:
        with self._lock:
            c = dict(self._c)
            return IngestCounters(
                connected=self._connected,
                in_flight_messages=self._in_flight,
                held_bytes=self._held_bytes,
                held_bytes_peak=self._held_bytes_peak,
                last_lag_s=self._last_lag_s,
                max_lag_s=self._max_lag_s,
                last_commit_at=self._last_commit_at,
                last_error=self._last_error,
                **c,
            )

    # -- paho (network thread) -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = build_client(self._link)
        client.max_inflight_messages_set(_OUTGOING_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._record_error(f"connect refused: {reason_code}")
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._deferring = False  # the broker sends what was deferred again on this connection
            self._c["connections"] += 1
        logger.info(
            "ingest connected",
            extra={"client_id": self.config.client_id, "session_present": flags.session_present},
        )
        # Subscribing again on a resumed session is harmless and covers a session the broker lost.
        client.subscribe(self.config.subscription, qos=QOS_AT_LEAST_ONCE)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._record_error(f"subscription refused: {[str(rc) for rc in reason_codes]}")
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
            self._generation += 1  # nothing received before this point may be acked any more
            renewing, self._renewing = self._renewing, False
        self._subscribed.clear()
        if not self._stopping.is_set() and not renewing:
            self._record_error(f"disconnected: {reason_code}")
        # Unprocessed messages will be redelivered on the resumed session: drop our copies.
        dropped = dropped_bytes = 0
        with contextlib.suppress(queue.Empty):
            while True:
                dropped_bytes += len(self._queue.get_nowait().payload)
                dropped += 1
        if dropped:
            with self._lock:
                self._in_flight -= dropped
                self._held_bytes -= dropped_bytes

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # left unacked: the broker keeps it for the next session
        size = len(message.payload)
        with self._lock:
            was_deferring = self._deferring
            # QoS 0 is never sent again, so it is never left to the broker.
            defer = message.qos > 0 and (
                was_deferring
                or (self._in_flight > 0 and self._held_bytes + size > self.config.max_held_bytes)
            )
            if defer:
                # Left unacked: the broker keeps it and sends it again after the reconnect that
                # `_renew_connection_if_deferred` makes once everything held is acked.
                self._deferring = True
                self._c["messages_deferred"] += 1
            else:
                generation = self._generation
                self._c["messages_received"] += 1
                self._in_flight += 1
                self._held_bytes += size
                self._held_bytes_peak = max(self._held_bytes_peak, self._held_bytes)
        if defer:
            if not was_deferring:
                logger.warning(
                    "ingest holds max_held_bytes unacked; later messages are left to the broker",
                    extra={"max_held_bytes": self.config.max_held_bytes},
                )
            return
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

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        """The broker PUBACKed an application ack: release the cycles now fully confirmed.

        Runs on paho's network thread with paho's outgoing-message lock held, so it only queues
        PUBACKs (`ack` appends to paho's packet queue) and never publishes."""
        if reason_code.is_failure:
            # A PUBACK, even a refusing one, ends the wait; the gateway resends readings whose
            # application ack it never gets.
            self._record_error(f"application ack refused by the broker: {reason_code}")
        with self._ack_cond:
            cycle = self._awaiting_by_mid.pop(mid, None)
            if cycle is not None:
                cycle.outstanding.discard(mid)
                self._release_ready_locked()
            elif mid in self._orphaned_mids:
                self._orphaned_mids.discard(mid)
            else:
                self._early_pubacks.add(mid)  # the worker registers the cycle in a moment

    # -- worker thread ---------------------------------------------------------------------------

    def _renew_connection_if_deferred(self) -> None:
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

    def _take_cycle(self, *, wait: bool = True) -> list[InboundMessage]:
        """Up to a cycle's worth of queued messages; `wait`: wait for the first (and, with
        `cycle_fill_s`, for more), else take only what is already here."""
        try:
            first = self._queue.get(timeout=_QUEUE_POLL_S) if wait else self._queue.get_nowait()
        except queue.Empty:
            return []
        messages = [first]
        size = len(first.payload)
        cfg = self.config
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

    def _work(self) -> None:
        if isinstance(self._pipeline, PipelineProcess):
            self._work_overlapped(self._pipeline)
            return
        while not self._stopping.is_set():
            self._renew_connection_if_deferred()
            messages = self._take_cycle()
            self._expire_overdue()
            if not messages:
                continue
            result = self._process_with_retry(messages)
            if result is None:
                return  # stopping while the store was down: nothing acked, the broker keeps it all
            self._finish(result)

    def _work_overlapped(self, pipeline: PipelineProcess) -> None:
        """`_work` for a pipeline in another process: the next cycles are handed over before the
        current one's answer is read, so the child starts on it at once instead of idling while
        this thread acks (one cycle at a time, each process would idle while the other works).

        Acks keep commit order: answers come back in submission order and each cycle is finished
        before the next answer is read. When a cycle fails, the answers of the cycles handed over
        after it are dropped unacked (any they committed are stored again as duplicates, which the
        store reports) and those cycles run again, one at a time, after the failed one."""
        while not self._stopping.is_set():
            self._renew_connection_if_deferred()
            if pipeline.outstanding < _CYCLES_HANDED_OVER:
                messages = self._take_cycle(wait=pipeline.outstanding == 0)
                self._expire_overdue()
                if messages:
                    pipeline.submit(messages)
                    continue
            if pipeline.outstanding == 0:
                continue
            oldest = pipeline.oldest_outstanding()
            try:
                result = pipeline.result()
            except Exception as exc:
                if not self._recover_overlapped(pipeline, oldest, exc):
                    return
                continue
            self._finish(result)
        # Stopping: finish what the child was given (its answers follow its commits). From the
        # first cycle that fails on, nothing more is acked: acks keep arrival order, and the broker
        # redelivers the rest to the next session.
        failed = False
        while pipeline.outstanding:
            try:
                result = pipeline.result()
            except Exception:
                logger.warning("ingest stopping: a cycle in the pipeline process failed; left unacked")
                failed = True
                continue
            if not failed:
                self._finish(result)

    def _recover_overlapped(
        self, pipeline: PipelineProcess, failed: list[InboundMessage], failure: Exception
    ) -> bool:
        """The oldest handed-over cycle (`failed`) failed: run it and the ones handed over after it
        again, in order, one at a time (with retries). False when stopping meanwhile."""
        retry = [failed]
        while pipeline.outstanding:
            retry.append(pipeline.oldest_outstanding())
            with contextlib.suppress(Exception):
                pipeline.result()  # dropped unacked: run again below
        for index, messages in enumerate(retry):
            result = self._process_with_retry(messages, failed=failure if index == 0 else None)
            if result is None:
                return False
            self._finish(result)
        return True

    def _process_with_retry(
        self, messages: list[InboundMessage], *, isolated: bool = False, failed: Exception | None = None
    ) -> CycleResult | None:
        """Process a cycle, retrying with backoff until it commits; `failed`: its first attempt
        already failed with that. None when stopping meanwhile (nothing acked)."""
        delay = self.config.retry_initial_s
        unexpected = 0
        while True:
            if failed is None:
                try:
                    return self._pipeline.process(messages)
                except Exception as attempt_error:
                    failed = attempt_error
            exc, failed = failed, None
            with self._lock:
                self._c["store_retries"] += 1
            if isinstance(exc, PipelineProcessDied):
                # Held and retried like an unavailable store, but a message that kills the pipeline
                # process every time must be isolated like one that trips a bug, or it stalls the
                # stream (a crash in native code, memory exhausted by one payload).
                self._record_error(f"pipeline process died, holding {len(messages)} messages")
                unexpected += 1
            elif isinstance(exc, (ReadingStoreUnavailable, ClinicDatabaseUnavailableError)):
                self._record_error(f"store unavailable, holding {len(messages)} messages: {exc}")
                unexpected = 0  # an outage is not the message's doing: it starts the count again
            else:
                # A bug, not bad input (bad input is dead-lettered by the pipeline). Hold the
                # messages (no ack), log loudly, and retry as for an unavailable store; if it keeps
                # failing, find the message that causes it so one payload cannot stall the stream.
                logger.error("ingest cycle failed unexpectedly; holding its messages", exc_info=exc)
                with self._lock:
                    self._last_error = "unexpected error in ingest cycle (see log)"
                unexpected += 1
            if unexpected >= ISOLATE_AFTER_FAILURES:
                if len(messages) > 1 and not isolated:
                    return self._process_one_by_one(messages)
                if len(messages) == 1:
                    settled = self._dead_letter_unprocessable(messages[0], exc)
                    if settled is not None:
                        return settled
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, self.config.retry_max_s)
            if self._stale(messages):
                # The connection dropped meanwhile: the broker will redeliver these.
                self._forget(messages)
                return None if self._stopping.is_set() else self._empty_cycle()

    def _process_one_by_one(self, messages: list[InboundMessage]) -> CycleResult | None:
        """Each message in a cycle of its own, in order (acks keep arrival order)."""
        for message in messages:
            result = self._process_with_retry([message], isolated=True)
            if result is None:
                return None
            self._finish(result)
        return self._empty_cycle()

    def _dead_letter_unprocessable(self, message: InboundMessage, exc: Exception) -> CycleResult | None:
        """One message that fails on its own every time: keep its raw bytes in the dead-letter table and
        ack it, so the stream flows (DESIGN.md, Delivery). None if even that cannot be written now."""
        failure = exc.failure if isinstance(exc, PipelineProcessError) else type(exc).__name__
        record = DeadLetterRecord(
            scope=DeadLetterScope.MESSAGE,
            topic=message.topic,
            payload=message.payload,
            reason=f"ingest failed on this message {ISOLATE_AFTER_FAILURES} times: {failure}",
            received_at=message.received_at,
        )
        try:
            self._pipeline.add_dead_letters([record])
        except Exception:
            logger.exception("could not dead-letter an unprocessable message; holding it")
            return None
        logger.error("unprocessable message dead-lettered", extra={"topic": message.topic})
        return CycleResult(messages=[message], dead_lettered_messages=1)

    @staticmethod
    def _empty_cycle() -> CycleResult:
        return CycleResult(messages=[])

    def _stale(self, messages: list[InboundMessage]) -> bool:
        with self._lock:
            return any(m.generation != self._generation for m in messages)

    def _forget(self, messages: list[InboundMessage]) -> None:
        with self._lock:
            self._in_flight -= len(messages)
            self._held_bytes -= sum(len(m.payload) for m in messages)

    def _finish(self, result: CycleResult) -> None:
        if not result.messages:
            return
        with self._lock:
            c = self._c
            c["readings_received"] += result.readings_received
            c["readings_stored"] += result.stored
            c["readings_duplicate"] += result.duplicates
            c["readings_rejected"] += result.rejected
            c["messages_dead_lettered"] += result.dead_lettered_messages
            self._last_commit_at = datetime.now(UTC)
            if result.lag_s is not None:
                self._last_lag_s = result.lag_s
                self._max_lag_s = max(self._max_lag_s or 0.0, result.lag_s)
        infos = self._publish_acks(result)
        cycle = _AwaitingCycle(
            deliveries=[(m.mid, m.qos, m.generation, len(m.payload)) for m in result.messages],
            outstanding=set(),
            deadline=time.monotonic() + self.config.ack_publish_timeout_s,
        )
        with self._ack_cond:
            for info in infos:
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    continue  # never queued, so never PUBACKed: nothing to wait for
                mid = info.mid
                self._orphaned_mids.discard(mid)  # a packet id reused after wrapping round
                if mid in self._early_pubacks:
                    self._early_pubacks.discard(mid)
                    continue
                cycle.outstanding.add(mid)
                self._awaiting_by_mid[mid] = cycle
            self._awaiting.append(cycle)
            self._release_ready_locked()
        if result.committed:
            self._announce(result.committed)
        self._wait_for_window()

    def _wait_for_window(self) -> None:
        """Block while `max_cycles_awaiting_ack` cycles await their application acks' PUBACK."""
        limit = self.config.max_cycles_awaiting_ack
        with self._ack_cond:
            while len(self._awaiting) >= limit:
                timeout = self._awaiting[0].deadline - time.monotonic()
                if timeout <= 0:
                    self._release_head_unconfirmed_locked()
                    continue
                self._ack_cond.wait(min(timeout, _QUEUE_POLL_S))

    def _expire_overdue(self) -> None:
        with self._ack_cond:
            now = time.monotonic()
            while self._awaiting and self._awaiting[0].deadline <= now:
                self._release_head_unconfirmed_locked()

    def _release_head_unconfirmed_locked(self) -> None:
        """The head cycle's application ack was not PUBACKed in time: ack its messages anyway.

        The ack is still queued in paho and is sent while this process lives; holding the
        messages would stall the stream."""
        cycle = self._awaiting[0]
        self._record_error(
            f"application ack not confirmed within {self.config.ack_publish_timeout_s:g} s; "
            "acking the committed messages anyway"
        )
        for mid in cycle.outstanding:
            self._awaiting_by_mid.pop(mid, None)
            self._orphaned_mids.add(mid)
        cycle.outstanding.clear()
        self._release_ready_locked()

    def _release_ready_locked(self) -> None:
        """Ack, in commit order, every leading cycle whose application acks are all PUBACKed.
        Caller holds `_ack_cond`; runs on the worker or on paho's network thread."""
        released = False
        while self._awaiting and not self._awaiting[0].outstanding:
            self._ack_deliveries(self._awaiting.popleft().deliveries)
            released = True
        if released:
            self._ack_cond.notify_all()

    def _ack_deliveries(self, deliveries: list[tuple[int, int, int, int]]) -> None:
        with self._lock:
            generation = self._generation
        acked = 0
        for mid, qos, message_generation, _size in deliveries:
            if qos == 0:
                continue
            if message_generation != generation:
                # An old connection's packet id must not be acked on a new one; paho drops packets
                # queued before a reconnect, and reconnects no sooner than reconnect_min_s after.
                continue
            if self._client.ack(mid, qos) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                acked += 1
        with self._lock:
            self._in_flight -= len(deliveries)
            self._held_bytes -= sum(delivery[3] for delivery in deliveries)
            self._c["messages_acked"] += acked

    def _publish_acks(self, result: CycleResult) -> list[MQTTMessageInfo]:
        infos = []
        for gateway_id, ack in result.ack_payloads().items():
            info = self._client.publish(acks_topic(gateway_id), ack, qos=QOS_AT_LEAST_ONCE)
            infos.append(info)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._record_error(f"application ack not queued: {mqtt.error_string(info.rc)}")
        return infos

    def _wait_awaiting_drained(self, deadline: float) -> None:
        """At stop: let the cycles awaiting PUBACK finish; past the deadline their messages stay
        unacked, and the broker redelivers them to the next session (duplicates, stored once)."""
        with self._ack_cond:
            while self._awaiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.error(
                        "ingest stopped with cycles awaiting their application ack",
                        extra={"cycles": len(self._awaiting)},
                    )
                    return
                self._ack_cond.wait(min(remaining, _QUEUE_POLL_S))

    def _announce(self, readings: list[AnyReading]) -> None:
        for listener in self._listeners:
            try:
                listener(readings)
            except Exception:
                logger.exception("ingest listener failed", extra={"readings": len(readings)})
                with self._lock:
                    self._c["listener_errors"] += 1

    # -- helpers ---------------------------------------------------------------------------------

    def _record_error(self, error: str) -> None:
        with self._lock:
            changed = error != self._last_error
            self._last_error = error
        if changed:
            logger.warning("ingest: %s", error, extra={"client_id": self.config.client_id})

    def _counter_extra(self) -> dict[str, Any]:
        counters = self.counters()
        return {
            "messages_received": counters.messages_received,
            "readings_stored": counters.readings_stored,
            "readings_duplicate": counters.readings_duplicate,
            "readings_rejected": counters.readings_rejected,
            "messages_dead_lettered": counters.messages_dead_lettered,
        }
