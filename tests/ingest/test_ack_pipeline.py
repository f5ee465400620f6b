"""The pipelined acks through the whole consumer (ingest.ack_window): a message's MQTT ack follows
the store commit and the broker's PUBACK of the cycle's application ack, while the worker goes on
with the next cycles.

The broker's PUBACKs of the application acks are held back at the consumer's paho client (a gate in
front of the consumer's `on_publish`, everything else real: Mosquitto, SQLite, the clinic
database), which is what a slow broker round trip looks like to ingest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest import IngestConsumer
from tests.ingest.helpers import GatewayClient, bp_reading, stored_ids, wait_until

pytestmark = [pytest.mark.mosquitto]

StartIngest = Callable[..., IngestConsumer]
# How long a condition that must NOT become true is watched for.
QUIET_S = 1.0


class PubackGate:
    """Holds the broker's PUBACKs of the consumer's application acks until `open()`."""

    def __init__(self, consumer: IngestConsumer) -> None:
        client = consumer._client
        self._deliver: Callable[..., None] = consumer._on_publish
        self._lock = threading.Lock()
        self._held: list[tuple[Any, ...]] = []
        self._open = False
        client.on_publish = self._on_publish

    def _on_publish(self, *args: Any) -> None:
        with self._lock:
            if not self._open:
                self._held.append(args)
                return
        self._deliver(*args)

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def open(self) -> None:
        with self._lock:
            self._open = True
            held, self._held = self._held, []
        for args in held:
            self._deliver(*args)


def test_messages_are_acked_only_after_the_broker_took_the_application_ack(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    consumer = start_ingest(max_messages_per_cycle=1)
    gate = PubackGate(consumer)
    readings = [bp_reading(i) for i in range(3)]
    for reading in readings:
        gateway.publish([reading])
    expected = {r.reading_id for r in readings}

    # Committed, and the application acks reached the gateway through the broker, but their
    # PUBACKs have not reached ingest: no readings message is acked yet.
    assert wait_until(lambda: set(stored_ids(store_path)) == expected)
    assert wait_until(lambda: gateway.stored_acked() == expected)
    assert wait_until(lambda: gate.held == 3)
    assert not wait_until(lambda: consumer.counters().messages_acked > 0, timeout_s=QUIET_S)
    assert consumer.counters().in_flight_messages == 3

    gate.open()
    assert wait_until(lambda: consumer.counters().messages_acked == 3), consumer.counters()
    assert consumer.counters().in_flight_messages == 0


def test_cycles_awaiting_the_application_ack_are_bounded(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    awaiting = 2
    consumer = start_ingest(max_messages_per_cycle=1, max_cycles_awaiting_ack=awaiting)
    gate = PubackGate(consumer)
    readings = [bp_reading(i) for i in range(6)]
    for reading in readings:
        gateway.publish([reading])

    # Two one-message cycles commit and wait for their PUBACK; the worker then waits too.
    assert wait_until(lambda: len(stored_ids(store_path)) == awaiting)
    assert not wait_until(lambda: len(stored_ids(store_path)) > awaiting, timeout_s=QUIET_S)
    assert consumer.counters().messages_acked == 0

    gate.open()
    expected = {r.reading_id for r in readings}
    assert wait_until(lambda: consumer.counters().messages_acked == 6), consumer.counters()
    assert set(stored_ids(store_path)) == expected
    assert wait_until(lambda: gateway.stored_acked() == expected)


def test_an_application_ack_never_confirmed_does_not_stall_the_stream(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    consumer = start_ingest(max_messages_per_cycle=1, max_cycles_awaiting_ack=1, ack_publish_timeout_s=0.3)
    PubackGate(consumer)  # never opened
    readings = [bp_reading(i) for i in range(3)]
    for reading in readings:
        gateway.publish([reading])

    # Committed readings are acked after the bounded wait, as before pipelining.
    assert wait_until(lambda: consumer.counters().messages_acked == 3), consumer.counters()
    assert set(stored_ids(store_path)) == {r.reading_id for r in readings}
    assert consumer.counters().last_error is not None


def test_a_filling_cycle_stops_waiting_once_receive_maximum_messages_are_held(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    # A fill window far longer than the test's wait: only the Receive Maximum bound ends it.
    consumer = start_ingest(receive_maximum=2, max_messages_per_cycle=10, cycle_fill_s=60.0)
    readings = [bp_reading(i) for i in range(2)]
    for reading in readings:
        gateway.publish([reading])

    assert wait_until(lambda: consumer.counters().messages_acked == 2, timeout_s=10.0), consumer.counters()
    assert set(stored_ids(store_path)) == {r.reading_id for r in readings}
