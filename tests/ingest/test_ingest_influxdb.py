"""Ingest into a real influxd through an outage (issue #6): influxd stopped, ingest stops acking, holds
no more than the broker's Receive Maximum, loses nothing, and catches up when influxd returns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConsumer
from storage.clinic.repository import ClinicRepository
from storage.readings.influxdb import InfluxConfig, InfluxReadingStore
from tests.fixtures.influxdb import InfluxServer, influxd_available
from tests.ingest.conftest import ingest_config
from tests.ingest.helpers import WAIT_S, GatewayClient, bp_reading, wait_until
from vitalgate.mosquitto import MosquittoBroker
from vitals.readings import ReadingKind

pytestmark = [
    pytest.mark.influxdb,
    pytest.mark.mosquitto,
    pytest.mark.skipif(
        not influxd_available(), reason="influxd missing: install the Debian package influxdb"
    ),
]
DATABASE = "vitalgate_ingest_outage"
RECEIVE_MAXIMUM = 5


@pytest.fixture
def influxd() -> Iterator[InfluxServer]:
    server = InfluxServer()  # its own: this test stops and restarts it
    server.start()
    server.create_database(DATABASE)
    yield server
    server.close()


def test_influxd_outage_holds_unacked_loses_nothing_and_catches_up(
    influxd: InfluxServer,
    mosquitto_broker: MosquittoBroker,
    clinic_sessions: sessionmaker[Session],
    gateway: GatewayClient,
) -> None:
    store = InfluxReadingStore(
        InfluxConfig(
            url=influxd.url, database=DATABASE, timeout_s=2.0, write_attempts=2, retry_backoff_s=0.05
        )
    )
    consumer = IngestConsumer(
        ingest_config(
            mosquitto_broker,
            receive_maximum=RECEIVE_MAXIMUM,
            max_messages_per_cycle=2,
            retry_initial_s=0.1,
            retry_max_s=1.0,
        ),
        store,
        ClinicRepository(clinic_sessions),
    )
    consumer.start()
    try:
        assert consumer.wait_subscribed(WAIT_S)
        first = [bp_reading(i) for i in range(10)]
        gateway.publish(first)
        assert wait_until(lambda: gateway.stored_acked() == {r.reading_id for r in first})

        influxd.stop()
        batches = [[bp_reading(100 + 10 * b + i) for i in range(10)] for b in range(12)]
        for batch in batches:
            gateway.publish(batch)
        assert wait_until(lambda: consumer.counters().store_retries >= 2, timeout_s=30)
        counters = consumer.counters()
        assert counters.messages_acked == 1  # only the batch stored before the outage
        assert counters.in_flight_messages <= RECEIVE_MAXIMUM  # holds no more than the broker lets it
        assert gateway.stored_acked() == {r.reading_id for r in first}

        influxd.start()
        expected = {r.reading_id for batch in [first, *batches] for r in batch}
        assert wait_until(lambda: gateway.stored_acked() == expected, timeout_s=60), consumer.counters()
        start = datetime(2000, 1, 1, tzinfo=UTC)
        stored = store.query_range(
            "p1", ReadingKind.BLOOD_PRESSURE, start, datetime.now(UTC) + timedelta(days=1)
        )
        assert sorted(r.reading_id for r in stored) == sorted(expected)  # all there, none twice
    finally:
        consumer.stop()
        store.close()
