"""What arrives (reliability.md §(a) 7, 9, 10): poison among valid readings, every message delivered
three times, and the persistent session that paho's default would lose. Each ends with the ledger.
Last, a reading-level case the ledger found: an urgent reading that reaches the alert engine together
with the readings measured after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import IngestConfig, IngestConsumer
from storage.clinic.database import create_clinic_engine, session_factory
from storage.clinic.repository import ClinicRepository
from storage.readings.sqlite import SqliteReadingStore
from tests.faults.meters import ABNORMAL_RULE, Home
from tests.faults.rig import Pipeline, wait_for
from vitals.payload import ReadingsBatch
from vitals.readings import GlucoseReading
from vitals.topics import readings_topic

pytestmark = [pytest.mark.faults, pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.slow]

WAIT_S = 90.0


class GatewayPublisher:
    """A home's gateway account publishing hand-made messages straight to the broker (QoS 1)."""

    def __init__(self, faults: Pipeline, home: Home) -> None:
        self.home = home
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=home.gateway_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(*faults.broker.credentials(home.gateway_id))
        self.client.connect(faults.broker.host, faults.broker.port)
        self.client.loop_start()

    def publish(self, payload: bytes | str) -> None:
        info = self.client.publish(readings_topic(self.home.gateway_id), payload, qos=1)
        info.wait_for_publish(WAIT_S)

    def batch(self, readings: Sequence[GlucoseReading]) -> str:
        return ReadingsBatch(
            gateway_id=self.home.gateway_id, sent_at=datetime.now(UTC), readings=tuple(readings)
        ).model_dump_json()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher_for(faults: Pipeline) -> Iterator[object]:
    made: list[GatewayPublisher] = []

    def make(home: Home) -> GatewayPublisher:
        made.append(GatewayPublisher(faults, home))
        return made[-1]

    yield make
    for publisher in made:
        publisher.close()


def wait_stored(faults: Pipeline, home: Home, ids: set[str]) -> None:
    """Until every reading is in the store, acked, and each abnormal one has its alert and notification."""
    assert faults.observer is not None
    patients = set(home.abnormal())

    def done() -> bool:
        _, acked, notifications, _ = faults.observer.counts(ids, patients)  # type: ignore[union-attr]
        wanted = {(p, ABNORMAL_RULE) for p in patients}
        return (
            ids <= set(faults.influx.rows_of(home))
            and ids <= set(acked)
            and set(faults.alerts_opened(home)) >= wanted
            and set(notifications) >= wanted
        )

    wait_for(done, WAIT_S, f"{home.gateway_id}'s readings to be stored and acked", 0.25)


def test_every_message_delivered_three_times_is_stored_and_alerted_once(
    faults: Pipeline, publisher_for: object
) -> None:
    """Each message of a home published three times over: one point per reading, written once, one
    alert and one notification per abnormal reading (§(a) 9; paho sets DUP only on its own resends,
    so these are new deliveries without DUP, as a gateway's resend after a timeout is)."""
    home = faults.add_home(300)
    publisher = publisher_for(home)  # type: ignore[operator]
    readings = [home.reading(g) for g in range(home.count)]
    batches = [publisher.batch(readings[i : i + 25]) for i in range(0, home.count, 25)]
    for _replay in range(3):
        for payload in batches:
            publisher.publish(payload)
    ids = set(home.reading_ids())
    wait_stored(faults, home, ids)
    ledger = faults.ledger("every message delivered three times", home, None)
    ledger.check()
    assert set(ledger.published.values()) == {3}, "the broker did not deliver each reading three times"


def test_poison_among_valid_readings_is_dead_lettered_and_the_stream_flows(
    faults: Pipeline, publisher_for: object
) -> None:
    """Garbage bytes, a payload of the wrong shape and a batch with one reading nobody can own, among
    valid batches: the poison is dead-lettered with its raw bytes, the stranger refused by name, every
    valid reading stored once (§(a) 7)."""
    home = faults.add_home(200)
    stranger = faults.add_home(1, patients=1)  # its meter is bound on another gateway, not this one
    publisher = publisher_for(home)  # type: ignore[operator]
    readings = [home.reading(g) for g in range(home.count)]
    garbage = b"\x00\xffnot json at all " + home.gateway_id.encode()
    wrong_shape = b'{"schema_version": 1, "gateway_id": "%s", "readings": "nope"}' % home.gateway_id.encode()
    foreign = stranger.reading(0).model_copy(update={"patient_id": home.patient_id(0)})
    published_at = time.monotonic()
    for i in range(0, home.count, 20):
        publisher.publish(publisher.batch(readings[i : i + 20]))
        if i == 60:
            publisher.publish(garbage)
            publisher.publish(wrong_shape)
            publisher.publish(publisher.batch([foreign]))
    ids = set(home.reading_ids())
    wait_stored(faults, home, ids)
    elapsed = time.monotonic() - published_at
    db = create_clinic_engine(faults.clinic_url)
    try:
        with db.connect() as conn:
            letters = [
                bytes(row[0])
                for row in conn.exec_driver_sql(
                    "SELECT payload FROM dead_letters WHERE gateway_id = ?", (home.gateway_id,)
                )
            ]
    finally:
        db.dispose()
    assert garbage in letters and wrong_shape in letters, "the poison was not kept with its raw bytes"
    assert faults.observer is not None
    assert foreign.reading_id not in set(faults.influx.rows_of(home))
    ledger = faults.ledger("poison among valid readings", home, None)
    ledger.notes.append(f"{len(letters)} dead letters kept; the valid stream took {elapsed:.1f} s")
    ledger.check()


def test_the_persistent_session_keeps_what_pahos_default_would_lose(faults: Pipeline, tmp_path: Path) -> None:
    """100 readings queued for an ingest that is away: a client that comes back with paho's default
    clean start finds none of them (the regression is detected), while ingest's own configuration
    (clean start off, a session expiry) receives and stores all 100 (§(a) 10)."""
    home = faults.add_home(101, patients=2)  # 100 queued, then one more as a probe
    user, password = faults.broker.credentials("ingest")
    topic = readings_topic(home.gateway_id)

    # paho's default: a session made, left, and then found empty by a default reconnect.
    received: list[bytes] = []
    subscribed = threading.Event()

    def client(**connect: object) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"faults-default-{home.gateway_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        c.username_pw_set(user, password)
        c.on_subscribe = lambda *_a: subscribed.set()
        c.on_message = lambda _c, _u, m: received.append(m.payload)
        c.connect(faults.broker.host, faults.broker.port, **connect)  # type: ignore[arg-type]
        c.loop_start()
        return c

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 300
    first = client(clean_start=False, properties=props)
    first.subscribe(topic, qos=1)
    assert subscribed.wait(WAIT_S)
    first.disconnect()
    first.loop_stop()

    # ingest's configuration, on a SQLite store of its own: a session made, then left.
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    sessions = session_factory(create_clinic_engine(faults.clinic_url))
    config = IngestConfig(
        host=faults.broker.host, port=faults.broker.port, username=user, password=password,
        client_id=f"faults-ingest-{home.gateway_id}", session_expiry_s=300,
    )  # fmt: skip
    consumer = IngestConsumer(config, store, ClinicRepository(sessions))
    consumer.start()
    assert consumer.wait_subscribed(WAIT_S)
    consumer.stop()

    publisher = GatewayPublisher(faults, home)
    readings = [home.reading(g) for g in range(home.count)]
    probe = publisher.batch(readings[100:])
    try:
        for i in range(0, 100, 10):
            publisher.publish(publisher.batch(readings[i : i + 10]))
        subscribed.clear()
        second = client()  # paho's default clean start: the first connect of this client starts clean
        second.subscribe(topic, qos=1)
        assert subscribed.wait(WAIT_S)
        # A session that survived would deliver its 100 queued readings before this probe.
        publisher.publish(probe)
        wait_for(lambda: len(received) >= 1, WAIT_S, "the probe")
        assert received == [probe.encode()], "paho's default kept the session: this check proves nothing"
        second.disconnect()
        second.loop_stop()
    finally:
        publisher.close()

    consumer = IngestConsumer(config, store, ClinicRepository(sessions))
    consumer.start()
    try:
        ids = set(home.reading_ids())
        wait_for(lambda: consumer.counters().readings_stored >= len(ids), WAIT_S, "ingest's queued readings")
        assert consumer.counters().readings_stored == len(ids)
        assert consumer.counters().readings_duplicate == 0
    finally:
        consumer.stop()
        store.close()
        sessions.kw["bind"].dispose()
    # The clinic's own ingest took the same readings through its own session: the whole ledger.
    wait_stored(faults, home, set(home.reading_ids()))
    ledger = faults.ledger("persistent session vs paho's default", home, None)
    ledger.notes.append(
        f"a consumer with ingest's configuration stored {len(ids)} queued readings; paho's default 0"
    )
    ledger.check()


def test_an_urgent_reading_delivered_with_the_readings_after_it_still_opens_its_alert(
    faults: Pipeline, publisher_for: object
) -> None:
    """A level-2 hypoglycaemia and the two in-range readings measured after it, delivered in one
    message, as a gateway sends its backlog after an outage: the urgent alert is opened (and, the
    condition having cleared unseen, kept for sign-off)."""
    home = faults.add_home(3, patients=1)
    publisher = publisher_for(home)  # type: ignore[operator]
    base = datetime.now(UTC) - timedelta(minutes=10)
    readings = [
        home.reading(g).model_copy(update={"measured_at": base + timedelta(minutes=g)}) for g in range(3)
    ]
    hypo = readings[0].model_copy(update={"glucose": 40.0, "glucose_mg_dl": 40.0})
    publisher.publish(publisher.batch([hypo, *readings[1:]]))
    wait_for(lambda: set(faults.influx.rows_of(home)) >= {r.reading_id for r in readings}, WAIT_S, "stored")
    wait_for(
        lambda: faults.alerts_opened(home)[(home.patient_id(0), ABNORMAL_RULE)] == 1,
        20,
        "the urgent alert of the level-2 hypoglycaemia",
    )
