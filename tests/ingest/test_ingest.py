"""Ingest against a real private Mosquitto and a SQLite reading store."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConsumer
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import ClinicRepository
from storage.readings import SqliteReadingStore
from storage.readings.protocol import AnyReading
from tests.ingest.conftest import ingest_config
from tests.ingest.helpers import (
    STRANGER_CUFF,
    WAIT_S,
    FlakyStore,
    GatewayClient,
    StoreWithABug,
    batch_json,
    bp_reading,
    check_a_bug_is_isolated,
    dead_letters,
    glucose_reading,
    stored_ids,
    wait_until,
)
from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import ReadingsBatch

pytestmark = [pytest.mark.mosquitto]

StartIngest = Callable[..., IngestConsumer]


def test_each_message_replayed_three_times_is_stored_once(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    consumer = start_ingest()
    batches = [[bp_reading(10 * b + i) for i in range(10)] for b in range(5)]
    payloads = [batch_json(gateway.gateway_id, batch) for batch in batches]
    for _replay in range(3):
        for payload in payloads:
            gateway.publish_raw(payload)
    expected = {r.reading_id for batch in batches for r in batch}

    assert wait_until(lambda: consumer.counters().messages_acked == 15), consumer.counters()
    ids = stored_ids(store_path)
    assert sorted(ids) == sorted(expected)
    assert wait_until(lambda: gateway.stored_acked() == expected)
    counters = consumer.counters()
    assert (counters.readings_stored, counters.readings_duplicate) == (50, 100)
    assert counters.readings_rejected == 0 and counters.messages_dead_lettered == 0
    exposition = counters.prometheus_text()
    assert "vitalgate_ingest_readings_stored_total 50\n" in exposition
    assert "vitalgate_ingest_readings_duplicate_total 100\n" in exposition


def test_poison_payloads_are_dead_lettered_with_raw_bytes_and_valid_readings_keep_flowing(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    consumer = start_ingest()
    not_json = b"\x00\xffnot json{"
    wrong_version = batch_json(gateway.gateway_id, [bp_reading(1)]).replace(
        b'"schema_version":1', b'"schema_version":99'
    )
    impostor = [bp_reading(2)]
    wrong_gateway = batch_json("gw-someone-else", impostor)
    valid: list[AnyReading] = [bp_reading(3), glucose_reading(4)]
    for payload in (not_json, wrong_version, wrong_gateway):
        gateway.publish_raw(payload)
    gateway.publish(valid)

    valid_ids = {r.reading_id for r in valid}
    assert wait_until(lambda: valid_ids <= gateway.stored_acked())
    assert set(stored_ids(store_path)) == valid_ids
    letters = dead_letters(clinic_sessions)
    assert [(d.scope, d.payload) for d in letters] == [
        (DeadLetterScope.MESSAGE, not_json),
        (DeadLetterScope.MESSAGE, wrong_version),
        (DeadLetterScope.MESSAGE, wrong_gateway),
    ]
    reasons = [d.reason for d in letters]
    assert reasons[0].startswith("not JSON")
    assert "schema_version 99" in reasons[1]
    assert "gw-someone-else" in reasons[2]
    # The readings of the impostor batch are answered as rejected, so the sender can drop them.
    assert wait_until(lambda: impostor[0].reading_id in gateway.rejected_acked())
    assert consumer.counters().messages_dead_lettered == 3


def test_one_invalid_reading_is_rejected_and_the_rest_of_its_batch_stored(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    start_ingest()
    good = [bp_reading(1), bp_reading(2)]
    document = ReadingsBatch(
        gateway_id=gateway.gateway_id, sent_at=datetime.now(UTC), readings=tuple(good)
    ).model_dump(mode="json")
    broken = bp_reading(3).model_dump(mode="json")
    broken["systolic_mmhg"] = 999.0  # contradicts systolic in its unit: a corrupted record
    document["readings"].insert(1, broken)
    gateway.publish_raw(json.dumps(document).encode())

    assert wait_until(lambda: broken["reading_id"] in gateway.rejected_acked())
    assert set(stored_ids(store_path)) == {r.reading_id for r in good}
    assert gateway.stored_acked() == {r.reading_id for r in good}
    [letter] = dead_letters(clinic_sessions)
    assert letter.scope is DeadLetterScope.READING and letter.reading_id == broken["reading_id"]
    assert json.loads(letter.payload)["systolic_mmhg"] == 999.0


def test_implausible_reading_is_stored_marked_invalid_not_dropped(
    start_ingest: StartIngest, gateway: GatewayClient, reading_store: SqliteReadingStore
) -> None:
    start_ingest()
    implausible = bp_reading(1, systolic=320.0, diastolic=90.0)
    assert not implausible.valid
    gateway.publish([implausible])
    assert wait_until(lambda: implausible.reading_id in gateway.stored_acked())
    [stored] = reading_store.query_range(
        "p1", implausible.kind, implausible.measured_at, implausible.measured_at.replace(year=2027)
    )
    assert not stored.valid and any("systolic_mmhg" in reason for reason in stored.invalid_reasons)


def test_unbound_meter_is_rejected_with_reason_and_the_others_stored(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    consumer = start_ingest()
    bound: list[AnyReading] = [bp_reading(1), glucose_reading(2)]
    stranger = bp_reading(3, device=STRANGER_CUFF)
    wrong_patient = bp_reading(4, patient_id="p2")  # CUFF is bound to p1, not p2
    wrong_slot = bp_reading(5, user_id=2)  # only CUFF's user slot 1 is bound
    gateway.publish([bound[0], stranger, wrong_patient, bound[1], wrong_slot])

    rejected_ids = {stranger.reading_id, wrong_patient.reading_id, wrong_slot.reading_id}
    assert wait_until(lambda: rejected_ids <= set(gateway.rejected_acked()))
    assert set(stored_ids(store_path)) == {r.reading_id for r in bound}
    assert gateway.stored_acked() == {r.reading_id for r in bound}
    reasons = gateway.rejected_acked()
    assert "not bound to patient p2" in reasons[wrong_patient.reading_id]
    letters = {d.reading_id: d for d in dead_letters(clinic_sessions)}
    assert set(letters) == rejected_ids
    assert all(d.scope is DeadLetterScope.READING for d in letters.values())
    assert consumer.counters().readings_rejected == 3


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_past_max_held_bytes_ingest_leaves_messages_to_the_broker_and_still_stores_each_once(
    tls: bool,
    mosquitto_broker: MosquittoBroker,
    reading_store: SqliteReadingStore,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
    store_path: Path,
    tmp_path: Path,
) -> None:
    """Ingest's own bound on what it holds, whatever the broker sends (Mosquitto 2.0.11 sends past
    Receive Maximum once acks flow; here Receive Maximum alone would let 100 messages in): a backlog
    of 30 messages against room for 8 is taken in turns, the rest left unacked at the broker and
    received again after a reconnect, and every reading is stored once and acked. Over TLS too, as
    ingest reaches a clinic broker on its TLS listener."""
    with contextlib.ExitStack() as stack:
        broker = mosquitto_broker
        overrides: dict[str, object] = {"client_id": f"ingest-held-{gateway_id}", "receive_maximum": 100}
        if tls:
            broker = stack.enter_context(MosquittoBroker(tmp_path / "tls-broker", tls=True))
            assert broker.tls_port is not None and broker.tls_files is not None
            overrides.update(port=broker.tls_port, tls_ca_file=broker.tls_files.ca_file)
        user = broker.add_gateway(gateway_id)
        gateway = GatewayClient(broker.host, broker.port, user.username, user.password, gateway_id)
        stack.callback(gateway.close)

        def start(**more: object) -> IngestConsumer:
            consumer = IngestConsumer(
                ingest_config(broker, **overrides, **more), reading_store, ClinicRepository(clinic_sessions)
            )
            consumer.start()
            stack.callback(consumer.stop)
            assert consumer.wait_subscribed(WAIT_S)
            return consumer

        batches = [[bp_reading(5000 + 10 * b + i) for i in range(10)] for b in range(30)]
        cap = 8 * len(batch_json(gateway_id, batches[0]))
        start().stop()  # the persistent session, then ingest is down
        for batch in batches:
            gateway.publish(batch)

        consumer = start(max_held_bytes=cap)
        expected = {r.reading_id for batch in batches for r in batch}
        assert wait_until(lambda: gateway.stored_acked() == expected, timeout_s=60), consumer.counters()
        counters = consumer.counters()
        assert 0 < counters.held_bytes_peak <= cap  # never held more, whatever the broker sent
        assert counters.messages_deferred > 0 and counters.connections >= 2  # it left some, came back
        assert counters.last_error is None  # a planned reconnect is not an error
        assert counters.readings_stored == len(expected)
        assert sorted(stored_ids(store_path)) == sorted(expected)  # each once
        assert wait_until(lambda: consumer.counters().held_bytes == 0)
        assert "vitalgate_ingest_messages_deferred_total" in consumer.counters().prometheus_text()


def test_store_outage_holds_messages_unacked_and_bounded_then_loses_nothing(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    reading_store: SqliteReadingStore,
    store_path: Path,
) -> None:
    flaky = FlakyStore(reading_store)
    flaky.down.set()
    receive_maximum = 5
    consumer = start_ingest(store=flaky, receive_maximum=receive_maximum, max_messages_per_cycle=2)
    batches = [[bp_reading(10 * b + i) for i in range(10)] for b in range(20)]
    for batch in batches:
        gateway.publish(batch)

    assert wait_until(lambda: flaky.failed_writes >= 3)
    counters = consumer.counters()
    assert counters.messages_acked == 0 and gateway.stored_acked() == set()
    assert counters.messages_received <= receive_maximum
    assert counters.in_flight_messages <= receive_maximum
    assert stored_ids(store_path) == []

    flaky.down.clear()
    expected = {r.reading_id for batch in batches for r in batch}
    assert wait_until(lambda: gateway.stored_acked() == expected), consumer.counters()
    assert sorted(stored_ids(store_path)) == sorted(expected)
    assert consumer.counters().store_retries >= 3


def test_listeners_receive_each_committed_batch_and_a_failing_listener_blocks_nothing(
    start_ingest: StartIngest, gateway: GatewayClient
) -> None:
    seen: list[str] = []

    def record(readings: Sequence[AnyReading]) -> None:
        seen.extend(r.reading_id for r in readings)

    def broken(_readings: Sequence[AnyReading]) -> None:
        raise RuntimeError("listener bug")

    consumer = start_ingest(listeners=(broken, record))
    readings = [bp_reading(i) for i in range(3)]
    gateway.publish(readings)
    assert wait_until(lambda: set(seen) == {r.reading_id for r in readings})
    assert consumer.counters().listener_errors >= 1


def test_shared_subscription_splits_messages_between_replicas(
    start_ingest: StartIngest, gateway: GatewayClient, store_path: Path
) -> None:
    group = f"ingest-{gateway.gateway_id}"
    first = start_ingest(shared_group=group)
    second = start_ingest(shared_group=group)
    batches = [[bp_reading(10 * b + i) for i in range(10)] for b in range(10)]
    for batch in batches:
        gateway.publish(batch)
    expected = {r.reading_id for batch in batches for r in batch}
    assert wait_until(lambda: gateway.stored_acked() == expected)
    assert sorted(stored_ids(store_path)) == sorted(expected)
    received = (first.counters().messages_received, second.counters().messages_received)
    assert sum(received) == 10 and min(received) > 0, received


def test_a_message_that_trips_a_bug_is_isolated_and_dead_lettered_and_the_stream_flows(
    start_ingest: StartIngest,
    gateway: GatewayClient,
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
) -> None:
    bad = bp_reading(2)
    store = StoreWithABug(reading_store, bad.reading_id)
    consumer = start_ingest(store=store, retry_initial_s=0.05, retry_max_s=0.1)
    letter = check_a_bug_is_isolated(consumer, gateway, store_path, clinic_sessions, bad)
    assert "RuntimeError" in letter.reason
    assert bad.reading_id not in gateway.rejected_acked()  # not refused: the gateway may resend it
