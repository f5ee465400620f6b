"""The clinic-database queries ingest relies on, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.clinic.database import ClinicDatabaseUnavailableError, session_factory
from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
from storage.clinic.models import DeadLetter, DeadLetterScope, MeterKind
from storage.clinic.repository import (
    Binding,
    ClinicRepository,
    DeadLetterRecord,
    bind_meter,
    unbind_meter,
)
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url
from vitals.readings import DeviceIdentity

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]

CUFF = DeviceIdentity(manufacturer="Omron", model="BP7000", serial_number="SN-1")
METER = DeviceIdentity(manufacturer="Roche", model="Guide", address="aa:bb:cc:dd:ee:ff")
AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def repository(clinic_engine: Engine) -> ClinicRepository:
    sessions = session_factory(clinic_engine)
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Practice")
        for patient_id in ("p1", "p2"):
            enrol_patient(session, patient_id=patient_id, clinic_id="c1", given_name="X", family_name="Y")
        for gateway_id in ("gw1", "gw2"):
            register_gateway(session, gateway_id=gateway_id, clinic_id="c1", mqtt_password="s")
        register_meter(session, clinic_id="c1", device=CUFF, kind=MeterKind.BLOOD_PRESSURE)
        register_meter(session, clinic_id="c1", device=METER, kind=MeterKind.GLUCOSE)
        # A two-user cuff: slot 1 -> p1, slot 2 -> p2; the glucose meter (no slots) -> p1.
        bind_meter(session, gateway_id="gw1", meter_key=CUFF.meter_key, patient_id="p1", device_user_id=1)
        bind_meter(session, gateway_id="gw1", meter_key=CUFF.meter_key, patient_id="p2", device_user_id=2)
        bind_meter(session, gateway_id="gw1", meter_key=METER.meter_key, patient_id="p1")
    return ClinicRepository(sessions)


def test_meter_is_bound_to_patient_only_through_its_gateway_and_slot(repository: ClinicRepository) -> None:
    def bound(gateway_id: str, meter_key: str, patient_id: str, slot: int | None) -> bool:
        return repository.is_bound(
            gateway_id=gateway_id, meter_key=meter_key, patient_id=patient_id, device_user_id=slot
        )

    assert bound("gw1", CUFF.meter_key, "p1", 1)
    assert bound("gw1", CUFF.meter_key, "p2", 2)
    assert not bound("gw1", CUFF.meter_key, "p2", 1)  # slot 1 is p1's
    assert not bound("gw1", CUFF.meter_key, "p1", None)  # a slotted binding needs the slot
    assert not bound("gw2", CUFF.meter_key, "p1", 1)  # not through another gateway
    assert bound("gw1", METER.meter_key, "p1", None)  # a whole-meter binding matches any slot
    assert bound("gw1", METER.meter_key, "p1", 3)


def test_bindings_for_gateway_and_its_config_payload(repository: ClinicRepository) -> None:
    # Ordered by meter key, then slot; the whole-meter binding (slot 0xFF) reads as slot None.
    assert repository.bindings_for_gateway("gw1") == [
        Binding("gw1", CUFF.meter_key, 1, "p1"),
        Binding("gw1", CUFF.meter_key, 2, "p2"),
        Binding("gw1", METER.meter_key, None, "p1"),
    ]
    config = repository.gateway_config("gw1", issued_at=AT)
    assert {(b.meter_key, b.user_id, b.patient_id) for b in config.bindings} == {
        (METER.meter_key, None, "p1"),
        (CUFF.meter_key, 1, "p1"),
        (CUFF.meter_key, 2, "p2"),
    }
    assert repository.bindings_for_gateway("gw2") == []


def test_unbinding_takes_effect(repository: ClinicRepository, clinic_engine: Engine) -> None:
    with Session(clinic_engine) as session, session.begin():
        assert unbind_meter(session, gateway_id="gw1", meter_key=CUFF.meter_key, device_user_id=2) == 1
    assert not repository.is_bound(
        gateway_id="gw1", meter_key=CUFF.meter_key, patient_id="p2", device_user_id=2
    )
    assert repository.is_bound(gateway_id="gw1", meter_key=CUFF.meter_key, patient_id="p1", device_user_id=1)


def test_dead_letters_keep_raw_bytes_and_a_replay_is_counted_not_duplicated(
    repository: ClinicRepository, clinic_engine: Engine
) -> None:
    poison = DeadLetterRecord(
        scope=DeadLetterScope.MESSAGE,
        topic="vitalgate/v1/gw/gw1/readings",
        payload=b"\x00\xff{not json",
        reason="not JSON",
        received_at=AT,
        gateway_id="gw1",
    )
    rejected = DeadLetterRecord(
        scope=DeadLetterScope.READING,
        topic="vitalgate/v1/gw/gw1/readings",
        payload=b'{"reading_id":"' + b"a" * 32 + b'"}',
        reason="meter not bound",
        received_at=AT,
        gateway_id="gw1",
        reading_id="a" * 32,
    )
    assert repository.add_dead_letters([poison, rejected]) == 2
    replayed = dataclasses.replace(poison, received_at=AT + timedelta(minutes=5))
    assert repository.add_dead_letters([replayed, rejected]) == 0
    with Session(clinic_engine) as session:
        rows = session.scalars(select(DeadLetter).order_by(DeadLetter.dead_letter_id)).all()
        assert [(r.scope, r.payload, r.times_seen) for r in rows] == [
            (DeadLetterScope.MESSAGE, b"\x00\xff{not json", 2),
            (DeadLetterScope.READING, rejected.payload, 2),
        ]
        assert rows[0].received_at == AT and rows[0].last_seen_at == AT + timedelta(minutes=5)
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 2


def test_an_unreachable_database_raises_the_retryable_error(tmp_path: object) -> None:
    from storage.clinic.database import create_clinic_engine

    engine = create_clinic_engine(f"sqlite:///{tmp_path}/missing-dir/x/clinic.sqlite3")
    repository = ClinicRepository(session_factory(engine))
    with pytest.raises(ClinicDatabaseUnavailableError):
        repository.bindings_for_gateway("gw1")
    engine.dispose()


def test_a_reason_with_nul_characters_is_stored_escaped(
    repository: ClinicRepository, clinic_engine: Engine
) -> None:
    record = DeadLetterRecord(
        scope=DeadLetterScope.MESSAGE,
        topic="vitalgate/v1/gw/gw1/readings",
        payload=b"\x00",
        reason="not JSON: '\x00'",
        received_at=AT,
        gateway_id="gw1",
    )
    assert repository.add_dead_letters([record]) == 1
    with Session(clinic_engine) as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert (letter.reason, letter.payload) == ("not JSON: '\\x00'", b"\x00")
