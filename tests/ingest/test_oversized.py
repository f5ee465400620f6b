"""Size caps on the readings path: the largest batch a gateway can send passes the shipped broker and
ingest; anything above the cap is cut off by the broker, and ingest refuses it before reading it,
dead-lettering its size, SHA-256 and first bytes, never the payload."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from ingest import InboundMessage, IngestPipeline
from ingest.validation import MAX_PAYLOAD_BYTES, OVERSIZED_PREFIX_BYTES, parse_message
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import ClinicRepository
from storage.readings import SqliteReadingStore
from tests.fixtures.mosquitto import DeployedRig
from tests.ingest.helpers import batch_json, bp_reading, dead_letters, stored_ids
from vitalgate.deployed_broker import DEPLOY_DIR
from vitals.payload import MAX_READINGS_PER_BATCH, ReadingsBatch
from vitals.readings import (
    CarbohydrateId,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Health,
    Meal,
    MedicationId,
    SampleLocation,
    SampleType,
    SensorStatus,
)
from vitals.readings import (
    Tester as GlucoseTester,
)
from vitals.topics import readings_topic
from vitals.units import GlucoseUnit

MQTT_HEADER_ROOM = 64 * 1024
NOW = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)


def largest_reading() -> GlucoseReading:
    """A glucose reading with every field at its schema bound (the largest reading JSON there is)."""
    text = "x" * 64
    return GlucoseReading(
        reading_id="f" * 32,
        device=DeviceIdentity(
            manufacturer=text, model=text, serial_number=text, address=text, firmware_revision=text
        ),
        patient_id="p" * 64,
        measured_at=NOW,
        device_time=datetime(2026, 3, 10, 7, 0, 0, 123456),
        clock_offset_s=-123456.123456,
        received_at=NOW,
        raw_hex="ab" * 2048,
        sequence_number=0xFFFF,
        unit=GlucoseUnit.MMOL_L,
        glucose=0.1,
        sample_type=SampleType.CONTROL_SOLUTION,
        sample_location=SampleLocation.NOT_AVAILABLE,
        sensor_status=frozenset(SensorStatus),
        context=GlucoseContext(
            meal=Meal.POSTPRANDIAL,
            tester=GlucoseTester.HEALTH_CARE_PROFESSIONAL,
            health=Health.DURING_MENSES,
            carbohydrate_id=CarbohydrateId.BREAKFAST,
            carbohydrate_grams=123.456789,
            exercise_duration_s=65535,
            exercise_intensity_percent=100,
            medication_id=MedicationId.INTERMEDIATE_ACTING_INSULIN,
            medication_amount=123.456789,
            medication_unit="mL",
            hba1c_percent=12.3456789,
        ),
    )


def largest_batch(gateway_id: str) -> bytes:
    readings = tuple(largest_reading() for _ in range(MAX_READINGS_PER_BATCH))
    return ReadingsBatch(gateway_id=gateway_id, sent_at=NOW, readings=readings).model_dump_json().encode()


def _shipped_max_packet_size(path: Path) -> int:
    found = re.findall(r"^max_packet_size (\d+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(found) == 1, path
    return int(found[0])


def test_the_largest_legitimate_batch_fits_under_ingests_cap_and_the_broker_fits_both() -> None:
    """The arithmetic in the configuration holds: a full batch of the largest readings is accepted."""
    assert len(largest_reading().model_dump_json()) == 6144
    batch = largest_batch("g" * 64)
    assert len(batch) == 3_072_646 < MAX_PAYLOAD_BYTES
    for config in (DEPLOY_DIR / "vitalgate.conf", DEPLOY_DIR / "without-plugin" / "vitalgate.conf"):
        assert _shipped_max_packet_size(config) == MAX_PAYLOAD_BYTES + MQTT_HEADER_ROOM
    parsed = parse_message(InboundMessage(1, 1, readings_topic("g" * 64), batch, NOW))
    assert not parsed.oversized and len(parsed.accepted) == MAX_READINGS_PER_BATCH


def test_an_oversized_payload_is_dead_lettered_as_a_summary_and_never_read(
    reading_store: SqliteReadingStore,
    store_path: Path,
    clinic_sessions: sessionmaker[Session],
    gateway_id: str,
) -> None:
    """Ten MiB that would be a valid batch: not parsed, nothing stored, the table keeps a few hundred bytes."""
    repository = ClinicRepository(clinic_sessions)
    pipeline = IngestPipeline(reading_store, repository, repository)
    valid = batch_json(gateway_id, [bp_reading(1)])
    payload = valid[:-1] + b" " * (10 * 1024 * 1024) + b"}"  # still valid JSON: only its size is wrong
    result = pipeline.process([InboundMessage(1, 1, readings_topic(gateway_id), payload, NOW)])

    assert stored_ids(store_path) == [] and result.stored == 0 and result.dead_lettered_messages == 1
    [letter] = dead_letters(clinic_sessions)
    assert letter.scope is DeadLetterScope.MESSAGE and letter.gateway_id == gateway_id
    summary = bytes(letter.payload)
    assert len(summary) < 400  # not the payload
    header, prefix = summary.split(b"\n", 1)
    assert header.decode() == f"size={len(payload)} sha256={hashlib.sha256(payload).hexdigest()}"
    assert prefix == payload[:OVERSIZED_PREFIX_BYTES]
    assert str(len(payload)) in letter.reason and "not read" in letter.reason
    # The same payload again is the same dead letter (idempotent), not a second copy.
    pipeline.process([InboundMessage(2, 1, readings_topic(gateway_id), payload, NOW)])
    assert len(dead_letters(clinic_sessions)) == 1


def test_the_shipped_broker_cuts_off_an_oversized_publish_and_passes_the_largest_batch(
    deployed_broker: DeployedRig,
) -> None:
    """On deploy/mosquitto as shipped: 10 MiB never reaches ingest's subscription; a full batch does."""
    gateway_id = "gw-size-cap"
    account = deployed_broker.gateway(gateway_id)
    ingest = deployed_broker.probe(
        deployed_broker.clinic("vitalgate-ingest"), "clinic", client_id="size-cap-ingest"
    )
    assert ingest.connect(), ingest.failure
    try:
        assert ingest.subscribe(readings_topic(gateway_id)) == 1
        sender = deployed_broker.probe(account, "gateway", client_id=gateway_id, wait_s=30)
        assert sender.connect(), sender.failure
        try:
            assert sender.publish(readings_topic(gateway_id), largest_batch(gateway_id)) == 0
            assert ingest.wait_messages(1, 30)
            oversized = b"{" + b" " * (10 * 1024 * 1024) + b"}"
            sender.client.publish(readings_topic(gateway_id), oversized, qos=1)
            assert sender.disconnected.wait(30)  # the broker drops the connection
        finally:
            sender.close()
        assert not ingest.wait_messages(2, 2)  # only the legitimate batch ever arrived
        assert len(ingest.messages[0].payload) == 3_072_646 - 64 + len(gateway_id)
    finally:
        ingest.close()
