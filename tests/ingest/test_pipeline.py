"""The ingest pipeline without MQTT: store rejections, binding changes, database outages, acks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest import InboundMessage, IngestPipeline
from storage.clinic.database import ClinicDatabaseUnavailableError, create_clinic_engine, session_factory
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings import ReadingStoreRejected, SqliteReadingStore, WriteResult
from storage.readings.protocol import AnyReading, ReadingStoreUnavailable
from tests.fixtures.postgres import clinic_url, postgres_database_url
from tests.ingest.helpers import (
    CUFF,
    STRANGER_CUFF,
    T0,
    FlakyStore,
    batch_json,
    bp_reading,
    dead_letters,
    glucose_reading,
    seed_clinic,
    stored_ids,
)
from vitals.topics import readings_topic, status_topic

__all__ = ["clinic_url", "postgres_database_url"]

_mids = iter(range(1, 1_000_000))


def message(gateway_id: str, payload: bytes, *, topic: str | None = None) -> InboundMessage:
    return InboundMessage(
        mid=next(_mids),
        qos=1,
        topic=topic or readings_topic(gateway_id),
        payload=payload,
        received_at=datetime.now(UTC),
    )


class RejectingStore:
    """A real SQLite store that refuses, as InfluxDB does with HTTP 400, any batch holding one id."""

    def __init__(self, store: SqliteReadingStore, poison_id: str) -> None:
        self._store = store
        self._poison_id = poison_id
        self.calls = 0

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        self.calls += 1
        if any(r.reading_id == self._poison_id for r in readings):
            raise ReadingStoreRejected("field type conflict (test)")
        return self._store.write_batch(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_reading_the_store_refuses_is_dead_lettered_and_its_neighbours_stored(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    readings = [bp_reading(i) for i in range(4)]
    other_message = [glucose_reading(9)]
    store = RejectingStore(reading_store, poison_id=readings[2].reading_id)
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(store, repository, repository)  # type: ignore[arg-type]

    result = pipeline.process(
        [
            message(gateway_id, batch_json(gateway_id, readings)),
            message(gateway_id, batch_json(gateway_id, other_message)),
        ]
    )

    expected = {r.reading_id for r in readings + other_message} - {readings[2].reading_id}
    assert set(stored_ids(store_path)) == expected
    ack = result.acks[gateway_id]
    assert set(ack.stored) == expected
    assert [(r.reading_id, r.reason) for r in ack.rejected] == [
        (readings[2].reading_id, "store rejected: field type conflict (test)")
    ]
    [letter] = dead_letters(clinic_sessions)
    assert (letter.scope, letter.reading_id) == (DeadLetterScope.READING, readings[2].reading_id)
    assert {r.reading_id for r in result.committed} == expected


def test_a_meter_bound_after_the_cache_filled_is_accepted_at_once(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository, binding_cache_ttl_s=3600)
    pipeline.process([message(gateway_id, batch_json(gateway_id, [bp_reading(1)]))])  # fills the cache
    with clinic_sessions() as session, session.begin():
        bind_meter(session, gateway_id=gateway_id, meter_key=STRANGER_CUFF.meter_key, patient_id="p2")

    newcomer = bp_reading(2, device=STRANGER_CUFF, patient_id="p2")
    result = pipeline.process([message(gateway_id, batch_json(gateway_id, [newcomer]))])

    assert result.acks[gateway_id].stored == (newcomer.reading_id,)
    assert result.rejected == 0


def test_clinic_database_outage_raises_and_stores_nothing(
    reading_store: SqliteReadingStore, store_path: Path, tmp_path: Path, gateway_id: str
) -> None:
    engine = create_clinic_engine(f"sqlite:///{tmp_path}/no/such/dir/clinic.sqlite3")
    repository = ClinicRepository(session_factory(engine))
    pipeline = IngestPipeline(reading_store, repository, repository)
    with pytest.raises(ClinicDatabaseUnavailableError):
        pipeline.process([message(gateway_id, batch_json(gateway_id, [bp_reading(1)]))])
    assert stored_ids(store_path) == []
    engine.dispose()


def test_messages_on_other_topics_are_dead_lettered(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository)
    payload = batch_json(gateway_id, [bp_reading(1)])
    result = pipeline.process(
        [
            message(gateway_id, payload, topic=status_topic(gateway_id)),
            message(gateway_id, payload, topic="elsewhere/readings"),
        ]
    )
    assert result.dead_lettered_messages == 2 and result.acks == {}
    assert [letter.reason for letter in dead_letters(clinic_sessions)] == [
        "topic: channel status carries no readings",
        "topic: not a vitalgate gateway topic",
    ]


def test_a_wrongly_typed_reading_is_rejected_and_never_stalls_the_stream(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    # A list where a number belongs: a validation error naming the field, ending as a rejection with
    # that reason while the rest of the stream flows.
    lone = json.loads(batch_json(gateway_id, [bp_reading(1)]))
    lone["readings"][0]["systolic"] = [128]
    good = glucose_reading(2)
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository)

    result = pipeline.process(
        [message(gateway_id, json.dumps(lone).encode()), message(gateway_id, batch_json(gateway_id, [good]))]
    )

    assert stored_ids(store_path) == [good.reading_id]
    ack = result.acks[gateway_id]
    assert ack.stored == (good.reading_id,)
    [rejected] = ack.rejected
    assert rejected.reading_id == bp_reading(1).reading_id
    assert rejected.reason.startswith("invalid reading: blood_pressure.systolic")
    assert [letter.scope for letter in dead_letters(clinic_sessions)] == [DeadLetterScope.READING]


def test_one_cycle_against_each_clinic_database_engine(
    clinic_url: str, reading_store: SqliteReadingStore, store_path: Path, gateway_id: str
) -> None:
    """Bindings and dead letters on SQLite and PostgreSQL (the production clinic database)."""
    sessions = seed_clinic(clinic_url, [gateway_id])
    try:
        repository = ClinicRepository(sessions)
        pipeline = IngestPipeline(reading_store, repository, repository)
        bound, stranger = bp_reading(1), bp_reading(2, device=STRANGER_CUFF)
        result = pipeline.process(
            [
                message(gateway_id, b"\x00 not json"),
                message(gateway_id, batch_json(gateway_id, [bound, stranger])),
            ]
        )
        assert stored_ids(store_path) == [bound.reading_id]
        assert [r.reading_id for r in result.acks[gateway_id].rejected] == [stranger.reading_id]
        assert [(d.scope, d.payload[:1]) for d in dead_letters(sessions)] == [
            (DeadLetterScope.MESSAGE, b"\x00"),
            (DeadLetterScope.READING, b"{"),
        ]
    finally:
        sessions.kw["bind"].dispose()


def test_a_newer_schema_version_is_dead_lettered_but_its_readings_are_not_refused(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    # A gateway upgraded before ingest: a rejection is final (the gateway deletes the readings), so
    # ingest must not send one; the gateway keeps them and resends until ingest understands them.
    newer = json.loads(batch_json(gateway_id, [bp_reading(1)]))
    newer["schema_version"] = 2
    older = json.loads(batch_json(gateway_id, [bp_reading(2)]))
    older["schema_version"] = 0
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository)
    result = pipeline.process(
        [message(gateway_id, json.dumps(newer).encode()), message(gateway_id, json.dumps(older).encode())]
    )
    assert stored_ids(store_path) == []
    assert result.dead_lettered_messages == 2
    rejected = {r.reading_id for ack in result.acks.values() for r in ack.rejected}
    assert bp_reading(1).reading_id not in rejected  # newer: kept by the gateway, not refused
    assert bp_reading(2).reading_id in rejected  # an unknown older version can never be read


def test_a_reading_taken_before_its_meter_was_rebound_still_belongs_to_its_patient(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    # The cuff (slot 1) moves from p1 to p2 at T0 + 30 min. A gateway that was offline delivers p1's
    # reading of T0 + 10 min afterwards: it was p1's when taken, so it is stored, not refused (a
    # refusal is final). A reading labelled p1 but taken after the move is refused.
    from storage.clinic.repository import bind_meter

    with clinic_sessions() as session:
        bind_meter(
            session,
            gateway_id=gateway_id,
            meter_key=CUFF.meter_key,
            patient_id="p2",
            device_user_id=1,
            at=T0 + timedelta(minutes=30),
        )
        session.commit()
    before, after = bp_reading(10), bp_reading(40)  # measured T0 + 10 min and T0 + 40 min, labelled p1
    repository = ClinicRepository(clinic_sessions)
    result = IngestPipeline(reading_store, repository, repository).process(
        [message(gateway_id, batch_json(gateway_id, [before, after]))]
    )
    assert stored_ids(store_path) == [before.reading_id]
    [rejected] = result.acks[gateway_id].rejected
    assert rejected.reading_id == after.reading_id
    assert "not bound to patient p1" in rejected.reason


def test_submitted_cycles_are_answered_in_submission_order_and_a_failed_one_is_not_kept(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    """The in-process pipeline hands results back in the order the consumer must ack them."""
    store = FlakyStore(reading_store)
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(store, repository, repository)  # type: ignore[arg-type]
    first = [message(gateway_id, batch_json(gateway_id, [bp_reading(1)]))]
    second = [message(gateway_id, batch_json(gateway_id, [bp_reading(2)]))]

    pipeline.submit(first)
    pipeline.submit(second)
    assert pipeline.outstanding == 2
    assert pipeline.oldest_outstanding() == first
    assert pipeline.result().messages == first
    assert stored_ids(store_path) == [bp_reading(1).reading_id]

    store.down.set()
    with pytest.raises(ReadingStoreUnavailable):
        pipeline.result()
    assert pipeline.outstanding == 0
    assert stored_ids(store_path) == [bp_reading(1).reading_id]
