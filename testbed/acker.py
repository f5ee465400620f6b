"""A small in-test acker: stands in for ingest, records every reading id it receives, acks it.

It connects with the broker's `ingest` credentials (ACL: read all readings, write all acks), so the
gateway under test talks through the same ACL it meets in production.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import ReadingsAck, ReadingsBatch, RejectedReading
from vitals.readings import Reading
from vitals.topics import ALL_READINGS_FILTER, acks_topic, parse_gateway_topic


class Acker:
    def __init__(
        self,
        broker: MosquittoBroker,
        *,
        should_ack: Callable[[str, int], bool] = lambda _rid, _n: True,
        reject: Callable[[str], str | None] = lambda _rid: None,
        client_id: str = "test-acker",
    ) -> None:
        self.received: Counter[str] = Counter()
        # When the gateway sent each copy received (the batch's sent_at): the broker may hand over
        # a copy queued before an outage after it.
        self.sent_at: defaultdict[str, list[datetime]] = defaultdict(list)
        self.acked: Counter[str] = Counter()
        self.batches = 0
        self.readings: dict[str, Reading] = {}
        self._should_ack = should_ack
        self._reject = reject
        self._cond = threading.Condition()
        username, password = broker.credentials("ingest")
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self._client.connect_async(broker.host, broker.port, clean_start=False, properties=props)
        self._client.on_subscribe = lambda *_a: self._subscribed.set()

    def start(self, timeout_s: float = 10.0) -> Acker:
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError("acker did not subscribe")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe(ALL_READINGS_FILTER, qos=1)

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        batch = ReadingsBatch.model_validate_json(message.payload)
        gateway_id = parse_gateway_topic(message.topic).gateway_id
        stored: list[str] = []
        rejected: list[RejectedReading] = []
        with self._cond:
            self.batches += 1
            for reading in batch.readings:
                self.received[reading.reading_id] += 1
                self.sent_at[reading.reading_id].append(batch.sent_at)
                self.readings[reading.reading_id] = reading
                if not self._should_ack(reading.reading_id, self.received[reading.reading_id]):
                    continue
                reason = self._reject(reading.reading_id)
                if reason is None:
                    stored.append(reading.reading_id)
                else:
                    rejected.append(RejectedReading(reading_id=reading.reading_id, reason=reason))
                self.acked[reading.reading_id] += 1
            self._cond.notify_all()
        if stored or rejected:
            ack = ReadingsAck(gateway_id=gateway_id, stored=tuple(stored), rejected=tuple(rejected))
            client.publish(acks_topic(gateway_id), ack.model_dump_json(), qos=1)

    def snapshot(self) -> list[Reading]:
        with self._cond:
            return list(self.readings.values())

    def wait_for(self, reading_ids: Iterable[str], timeout_s: float) -> bool:
        wanted = set(reading_ids)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not wanted <= set(self.acked):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def wait_received(self, reading_id: str, times: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.received[reading_id] < times:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True
