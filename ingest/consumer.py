"""The ingest consumer: MQTT v5 in, reading store out, acks only after commit.

It owns the paho session and wires the rooms it is made of, each with its own module:
- flow control (ingest.flow): what ingest holds unacked, the bound on it, and the reconnect that
  gets back the messages it left to the broker;
- the worker (ingest.worker): cycles through the pipeline, retries, isolation, dead letters;
- the ack window (ingest.ack_window): committed cycles acked in order once the broker has taken
  their application acks;
- the counters (ingest.metrics).

Threads (reliability.md §1.3: paho callbacks run on its network thread, and a slow `on_message`
blocks keepalive, paho#379/#328):
- paho's network thread (`loop_start`) only puts each PUBLISH on a queue and returns;
- one worker thread takes up to `max_messages_per_cycle` messages, runs the pipeline (validate,
  bindings, one store transaction, dead letters) here or, with a `PipelineProcess` (what `vitalgate
  ingest` runs), in a child process, and only then acks them in arrival order (PUBACKs must follow
  PUBLISH order, [MQTT-4.6.0-2], reliability.md §1.1).

Delivery:
- persistent session: `clean_start=False`, Session Expiry > 0, a stable client id
  (reliability.md §0 item 3); QoS 1; `manual_ack=True`, so paho sends no PUBACK until `ack(mid)`
  (§1.3, paho#753);
- per cycle: commit -> publish the application ack (`ReadingsAck`, QoS 1) -> once the broker has
  PUBACKed that ack, PUBACK the readings messages (ingest.ack_window);
- a message that arrived on an earlier connection is never acked on a later one (ingest.ack_window).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.ack_window import AckWindow, Delivery
from ingest.config import IngestConfig
from ingest.flow import FlowControl
from ingest.metrics import IngestCounters, IngestMetrics
from ingest.pipeline import ClinicAccess, CycleProcessor, CycleResult, IngestPipeline
from ingest.worker import Worker
from storage.readings.protocol import AnyReading, ReadingStore
from vitals.mqtt_link import build_client, connect_async
from vitals.topics import acks_topic

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE: Final = 1
# paho's own bound on outgoing QoS 1 messages in flight (the application acks); default 20.
_OUTGOING_INFLIGHT: Final = 100
# A publish paho queued (or will send once connected): the broker's PUBACK of it will come.
_QUEUED: Final = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

ReadingsListener = Callable[[Sequence[AnyReading]], None]
"""Called after each committed cycle with its accepted readings (new and already stored alike:
after a crash between commit and announcement, the redelivered readings are duplicates and must
still be announced; listeners are idempotent on reading_id, reliability.md §(a) 9)."""


class IngestError(RuntimeError):
    """The consumer could not start or stop as asked."""


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
        elif listeners and not pipeline.want_committed:
            raise IngestError("listeners need the committed readings: build the pipeline with want_committed")
        self._listeners = tuple(listeners)
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._metrics = IngestMetrics()
        self._link = config.link_config()
        self._client = self._make_client()
        self._flow = FlowControl(config, self._client, self._metrics)
        self._window = AckWindow(
            self._flow,
            max_cycles=config.max_cycles_awaiting_ack,
            timeout_s=config.ack_publish_timeout_s,
            on_error=self._record_error,
        )
        self._worker = Worker(
            config,
            pipeline,
            self._flow,
            self._window,
            self._metrics,
            finish=self._finish,
            report=self._record_error,
            stopping=self._stopping,
        )

    # -- public ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise IngestError("ingest consumer already started")
        if self._stopping.is_set():
            raise IngestError("a stopped ingest consumer cannot be restarted; create a new one")
        self._started = True
        connect_async(self._client, self._link)
        self._thread = threading.Thread(target=self._worker.run, name="ingest-worker", daemon=True)
        self._thread.start()
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
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                logger.error("ingest worker did not finish within the shutdown timeout")
        self._window.drain(deadline)
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        logger.info("ingest stopped", extra=self._counter_extra())

    def counters(self) -> IngestCounters:
        return self._metrics.snapshot(self._flow.held_now())

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
        self._flow.connected()
        self._metrics.count_connection()
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
        # Nothing received before this point may be acked any more; unprocessed messages will be
        # redelivered on the resumed session, so flow control drops its copies.
        renewing = self._flow.disconnected()
        self._subscribed.clear()
        if not self._stopping.is_set() and not renewing:
            self._record_error(f"disconnected: {reason_code}")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # left unacked: the broker keeps it for the next session
        self._flow.receive(message)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        """The broker PUBACKed an application ack: the ack window releases the cycles now confirmed.

        Runs on paho's network thread with paho's outgoing-message lock held, so it only queues
        PUBACKs (`ack` appends to paho's packet queue) and never publishes."""
        if reason_code.is_failure:
            # A PUBACK, even a refusing one, ends the wait; the gateway resends readings whose
            # application ack it never gets.
            self._record_error(f"application ack refused by the broker: {reason_code}")
        self._window.on_puback(mid)

    # -- worker thread ---------------------------------------------------------------------------

    def _finish(self, result: CycleResult) -> None:
        """A committed cycle: count it, publish its application acks, hand it to the ack window,
        announce its readings, then wait while the window is full."""
        if not result.messages:
            return
        self._metrics.record_cycle(result)
        app_ack_mids = self._publish_acks(result)
        self._window.add(
            [Delivery(m.mid, m.qos, m.generation, len(m.payload)) for m in result.messages], app_ack_mids
        )
        if result.committed:
            self._announce(result.committed)
        self._window.wait_for_room()

    def _publish_acks(self, result: CycleResult) -> list[int]:
        """Publish the cycle's application acks; the packet ids of those whose PUBACK will come."""
        mids = []
        for gateway_id, ack in result.ack_payloads().items():
            info = self._client.publish(acks_topic(gateway_id), ack, qos=QOS_AT_LEAST_ONCE)
            if info.rc in _QUEUED:
                mids.append(info.mid)
            else:  # never queued, so never PUBACKed: nothing to wait for
                self._record_error(f"application ack not queued: {mqtt.error_string(info.rc)}")
        return mids

    def _announce(self, readings: list[AnyReading]) -> None:
        for listener in self._listeners:
            try:
                listener(readings)
            except Exception:
                logger.exception("ingest listener failed", extra={"readings": len(readings)})
                self._metrics.count_listener_error()

    # -- helpers ---------------------------------------------------------------------------------

    def _record_error(self, error: str) -> None:
        if self._metrics.record_error(error):
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
