"""Ingest across broker restarts (reliability.md §(a) 4): persistent sessions lose nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConsumer
from storage.clinic.repository import ClinicRepository
from storage.readings import SqliteReadingStore
from tests.ingest.conftest import ingest_config
from tests.ingest.helpers import (
    WAIT_S,
    FlakyStore,
    GatewayClient,
    batch_json,
    bp_reading,
    stored_ids,
    wait_until,
)
from vitalgate.mosquitto import MosquittoBroker

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

RESTART_WAIT_S = 90.0


@pytest.fixture
def own_gateway(mqtt_broker: MosquittoBroker, gateway_id: str) -> Iterator[GatewayClient]:
    user = mqtt_broker.add_gateway(gateway_id)
    client = GatewayClient(mqtt_broker.host, mqtt_broker.port, user.username, user.password, gateway_id)
    yield client
    client.close()


def _consumer(
    broker: MosquittoBroker, store: SqliteReadingStore, sessions: sessionmaker[Session], client_id: str
) -> IngestConsumer:
    consumer = IngestConsumer(ingest_config(broker, client_id=client_id), store, ClinicRepository(sessions))
    consumer.start()
    assert consumer.wait_subscribed(WAIT_S)
    return consumer


def test_broker_restart_while_ingest_holds_unacked_messages_loses_nothing_and_stores_nothing_twice(
    mqtt_broker: MosquittoBroker,
    own_gateway: GatewayClient,
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    # The store is down, so ingest holds its in-flight messages unacked when the broker restarts;
    # after the reconnect the broker redelivers them with the same packet ids, and ingest must not
    # ack the old copies on the new connection.
    flaky = FlakyStore(reading_store)
    flaky.down.set()
    consumer = _consumer(mqtt_broker, flaky, clinic_sessions, f"ingest-restart-{gateway_id}")  # type: ignore[arg-type]
    try:
        readings = [bp_reading(i) for i in range(2_000)]
        for i in range(0, len(readings), 50):
            own_gateway.publish_raw(batch_json(gateway_id, readings[i : i + 50]), wait=False)
        assert wait_until(lambda: flaky.failed_writes >= 2)
        mqtt_broker.restart()  # SIGTERM: mosquitto saves sessions and queued messages
        assert wait_until(lambda: consumer.counters().connections >= 2, RESTART_WAIT_S)
        flaky.down.clear()

        expected = {r.reading_id for r in readings}
        assert wait_until(lambda: own_gateway.stored_acked() >= expected, RESTART_WAIT_S), consumer.counters()
        ids = stored_ids(store_path)
        assert len(ids) == len(set(ids)) == len(expected)
    finally:
        consumer.stop()


def test_readings_queued_while_ingest_is_down_survive_a_broker_restart(
    mqtt_broker: MosquittoBroker,
    own_gateway: GatewayClient,
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    client_id = f"ingest-offline-{gateway_id}"
    _consumer(mqtt_broker, reading_store, clinic_sessions, client_id).stop()  # leaves its session
    readings = [bp_reading(i) for i in range(100)]
    for i in range(0, len(readings), 10):
        own_gateway.publish_raw(batch_json(gateway_id, readings[i : i + 10]))
    mqtt_broker.restart()

    consumer = _consumer(mqtt_broker, reading_store, clinic_sessions, client_id)
    try:
        expected = {r.reading_id for r in readings}
        assert wait_until(lambda: set(stored_ids(store_path)) == expected, RESTART_WAIT_S)
        assert wait_until(lambda: own_gateway.stored_acked() >= expected, RESTART_WAIT_S)
    finally:
        consumer.stop()
