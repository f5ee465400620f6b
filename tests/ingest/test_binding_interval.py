"""Ingest attributes a reading only inside its binding's interval: bound_at, unbound_at, prior memory,
and an administrator's adoption of a gateway's unbound readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from ingest import InboundMessage, IngestPipeline
from storage.clinic.fleet import record_status
from storage.clinic.repository import ClinicRepository, bind_meter, unbind_meter
from storage.clinic.unbound_readings import decide_release
from storage.readings import SqliteReadingStore
from tests.ingest.helpers import STRANGER_CUFF, T0, batch_json, bp_reading, dead_letters
from vitals.payload import GatewayStatus, UnboundAction, UnboundReason, UnboundSummary
from vitals.topics import readings_topic

BOUND_AT = T0 + timedelta(minutes=30)


def _message(gateway_id: str, payload: bytes) -> InboundMessage:
    return InboundMessage(
        mid=1, qos=1, topic=readings_topic(gateway_id), payload=payload, received_at=datetime.now(UTC)
    )


def _bind_loaner(sessions: sessionmaker[Session], gateway_id: str, *, prior_memory_belongs: bool) -> None:
    with sessions() as session, session.begin():
        bind_meter(
            session, gateway_id=gateway_id, meter_key=STRANGER_CUFF.meter_key, patient_id="p2",
            device_user_id=1, at=BOUND_AT, prior_memory_belongs=prior_memory_belongs,
        )  # fmt: skip


def test_a_reading_measured_before_bound_at_is_dead_lettered_with_the_interval_and_one_after_stored(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    """A loaner cuff's earlier memory never lands under its new patient; what they measure does."""
    _bind_loaner(clinic_sessions, gateway_id, prior_memory_belongs=False)
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository)
    earlier = bp_reading(10, device=STRANGER_CUFF, patient_id="p2")
    later = bp_reading(40, device=STRANGER_CUFF, patient_id="p2")

    result = pipeline.process([_message(gateway_id, batch_json(gateway_id, [earlier, later]))])

    assert result.acks[gateway_id].stored == (later.reading_id,)
    [rejected] = result.acks[gateway_id].rejected
    assert rejected.reading_id == earlier.reading_id
    assert (
        "not bound to patient p2" in rejected.reason and "outside its binding's interval" in rejected.reason
    )
    assert BOUND_AT.isoformat() in rejected.reason
    [letter] = dead_letters(clinic_sessions)
    assert (letter.reading_id, letter.reason) == (earlier.reading_id, rejected.reason)
    assert [
        r.reading_id for r in reading_store.query_range("p2", later.kind, T0, T0 + timedelta(hours=1))
    ] == [later.reading_id]


def test_the_meters_memory_is_accepted_when_the_administrator_said_it_belongs(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    """A meter the patient already owned brings its history along when bound with prior memory."""
    _bind_loaner(clinic_sessions, gateway_id, prior_memory_belongs=True)
    repository = ClinicRepository(clinic_sessions)
    earlier = bp_reading(10, device=STRANGER_CUFF, patient_id="p2")

    result = IngestPipeline(reading_store, repository, repository).process(
        [_message(gateway_id, batch_json(gateway_id, [earlier]))]
    )

    assert result.acks[gateway_id].stored == (earlier.reading_id,)


def test_a_reading_measured_after_unbound_at_is_refused(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    """Once a meter is unbound, what it measures is nobody's: it is dead-lettered, not stored."""
    _bind_loaner(clinic_sessions, gateway_id, prior_memory_belongs=False)
    with clinic_sessions() as session, session.begin():
        unbind_meter(session, gateway_id=gateway_id, meter_key=STRANGER_CUFF.meter_key, device_user_id=1,
                     at=T0 + timedelta(minutes=50))  # fmt: skip
    repository = ClinicRepository(clinic_sessions)
    inside, after = (bp_reading(i, device=STRANGER_CUFF, patient_id="p2") for i in (45, 55))

    result = IngestPipeline(reading_store, repository, repository).process(
        [_message(gateway_id, batch_json(gateway_id, [inside, after]))]
    )

    assert result.acks[gateway_id].stored == (inside.reading_id,)
    assert [r.reading_id for r in result.acks[gateway_id].rejected] == [after.reading_id]


def test_adopted_unbound_readings_are_accepted_for_the_chosen_patient_only_within_the_span(
    reading_store: SqliteReadingStore, clinic_sessions: sessionmaker[Session], gateway_id: str
) -> None:
    """An administrator's adoption lets exactly the adopted span through, under the chosen patient."""
    _bind_loaner(clinic_sessions, gateway_id, prior_memory_belongs=False)
    first, last = T0 + timedelta(minutes=5), T0 + timedelta(minutes=15)
    summary = UnboundSummary(meter_key=STRANGER_CUFF.meter_key, user_id=1, reason=UnboundReason.OUTSIDE_BINDING,
                             count=3, first_measured_at=first, last_measured_at=last)  # fmt: skip
    now = datetime.now(UTC)
    with clinic_sessions() as session, session.begin():
        record_status(
            session,
            GatewayStatus(
                gateway_id=gateway_id, online=True, reported_at=now, unbound_readings=3, unbound=(summary,)
            ),
            received_at=now,
            retained=False,
        )
        decide_release(
            session, clinic_id="c1", gateway_id=gateway_id, meter_key=STRANGER_CUFF.meter_key, user_id=1,
            action=UnboundAction.ADOPT, patient_id="p2", decided_by=None, decided_at=now,
        )  # fmt: skip
    repository = ClinicRepository(clinic_sessions)
    adopted = [bp_reading(i, device=STRANGER_CUFF, patient_id="p2") for i in (5, 10, 15)]
    outside = bp_reading(20, device=STRANGER_CUFF, patient_id="p2")
    for_someone_else = bp_reading(12, device=STRANGER_CUFF, patient_id="p1")

    result = IngestPipeline(reading_store, repository, repository).process(
        [_message(gateway_id, batch_json(gateway_id, [*adopted, outside, for_someone_else]))]
    )

    assert result.acks[gateway_id].stored == tuple(r.reading_id for r in adopted)
    assert {r.reading_id for r in result.acks[gateway_id].rejected} == {
        outside.reading_id,
        for_someone_else.reading_id,
    }
