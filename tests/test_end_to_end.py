"""The first reading end to end, through real parts: a blood-pressure reading enters the
gateway's outbox, is published to a private Mosquitto, consumed by ingest, stored in the SQLite
reading store and returned by the API as JSON. Fails if any stage drops or duplicates it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from api.deps import ApiServices
from gateway.outbox import Outbox
from gateway.uplink import Forwarder, ForwarderConfig, MqttUplink, UplinkConfig
from ingest.config import IngestConfig
from ingest.consumer import IngestConsumer
from storage.clinic.models import GuidelineProfile, MeterKind, UserRole
from storage.clinic.repository import ClinicRepository
from storage.readings.sqlite import SqliteReadingStore
from vitalgate.administration import add_clinic, add_gateway, add_patient, add_user, bind_meter
from vitalgate.mosquitto import MosquittoBroker
from vitalgate.settings import load_settings
from vitalgate.wiring import open_clinic_database
from vitals.identity import blood_pressure_reading_id
from vitals.payload import ReadingsBatch
from vitals.readings import BloodPressureReading, DeviceIdentity
from vitals.topics import readings_topic

pytestmark = pytest.mark.mosquitto

GATEWAY_ID = "gw-e2e"
CUFF = DeviceIdentity(manufacturer="A&D Medical", model="UA-651BLE", serial_number="5190123")
PASSWORD = "correct horse battery staple"
WAIT_S = 20.0


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Pipeline:
    outbox: Outbox
    forwarder: Forwarder
    ingest: IngestConsumer
    store: SqliteReadingStore
    api: TestClient
    broker: MosquittoBroker


@pytest.fixture
async def pipeline(mosquitto_broker: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Pipeline]:
    mosquitto_broker.add_gateway(GATEWAY_ID)
    settings = load_settings(None, data_dir=tmp_path / "clinic")
    database = open_clinic_database(settings)
    sessions = database.sessions
    with sessions() as session:
        add_clinic(session, "c1", "Clinic One", profile=GuidelineProfile.CN)
        add_user(
            session,
            clinic_id="c1",
            user_id="dr-a",
            email="a@c1.example",
            display_name="Dr A",
            roles=[UserRole.FAMILY_DOCTOR],
            password=PASSWORD,
        )
        add_patient(
            session,
            clinic_id="c1",
            patient_id="p-1",
            given_name="Wei",
            family_name="Wang",
            family_doctor_id="dr-a",
        )
        add_gateway(session, clinic_id="c1", gateway_id=GATEWAY_ID)
        bind_meter(
            session, gateway_id=GATEWAY_ID, device=CUFF, kind=MeterKind.BLOOD_PRESSURE, patient_id="p-1"
        )
        session.commit()

    store = SqliteReadingStore(settings.reading_store_path)
    username, password = mosquitto_broker.credentials("ingest")
    ingest = IngestConsumer(
        IngestConfig(
            host=mosquitto_broker.host,
            port=mosquitto_broker.port,
            username=username,
            password=password,
            client_id=f"ingest-e2e-{tmp_path.name[-12:]}",
        ),
        store,
        ClinicRepository(sessions),
    )
    ingest.start()
    assert ingest.wait_subscribed(WAIT_S)

    gw_user, gw_password = mosquitto_broker.credentials(GATEWAY_ID)
    outbox = Outbox(tmp_path / "gateway" / "outbox.sqlite3", capacity=1000).open()
    uplink = MqttUplink(
        UplinkConfig(
            gateway_id=GATEWAY_ID,
            host=mosquitto_broker.host,
            port=mosquitto_broker.port,
            username=gw_user,
            password=gw_password,
            allow_plain_mqtt=True,  # the test broker listens on loopback
        )
    )
    forwarder = Forwarder(GATEWAY_ID, outbox, uplink, ForwarderConfig(ack_timeout_s=30, batch_size=50))
    await uplink.start()
    assert await uplink.wait_connected(WAIT_S)
    task = asyncio.create_task(forwarder.run())

    services = ApiServices(reading_store=store, clinic_sessions=sessions, jwt_secret="e2e-secret-" + "x" * 32)
    with TestClient(create_app(services)) as api:
        yield Pipeline(outbox, forwarder, ingest, store, api, mosquitto_broker)
    task.cancel()
    await uplink.stop()
    outbox.close()
    ingest.stop()
    store.close()
    database.close()


def cuff_reading(measured_at: datetime, systolic: float) -> BloodPressureReading:
    device_time = measured_at.replace(tzinfo=None)
    rid = blood_pressure_reading_id(
        CUFF, device_time, 1, systolic=systolic, diastolic=92, mean_arterial=110, pulse_bpm=74
    )
    return BloodPressureReading(
        reading_id=rid,
        device=CUFF,
        patient_id="p-1",
        measured_at=measured_at,
        device_time=device_time,
        systolic=systolic,
        diastolic=92,
        mean_arterial=110,
        pulse_bpm=74,
        user_id=1,
        raw_hex="1e9e00",
    )


def api_readings(p: Pipeline) -> list[dict[str, object]]:
    token = p.api.post("/api/v1/auth/token", data={"username": "a@c1.example", "password": PASSWORD})
    assert token.status_code == 200
    response = p.api.get(
        "/api/v1/patients/p-1/readings",
        params={"kind": "blood_pressure"},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert response.status_code == 200
    readings: list[dict[str, object]] = response.json()["readings"]
    return readings


async def test_a_cuff_reading_travels_from_outbox_to_api_once(pipeline: Pipeline) -> None:
    measured_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    reading = cuff_reading(measured_at, 158)
    pipeline.outbox.commit([reading])
    pipeline.forwarder.wake()

    # The gateway deletes the reading only on the clinic's application ack.
    await wait_until(lambda: pipeline.outbox.stats().depth == 0, "the application ack")
    assert pipeline.ingest.counters().readings_stored == 1

    readings = api_readings(pipeline)
    assert len(readings) == 1
    got = readings[0]
    assert got["reading_id"] == reading.reading_id
    assert got["systolic_mmhg"] == 158
    assert got["diastolic_mmhg"] == 92
    assert got["pulse_bpm"] == 74
    assert got["patient_id"] == "p-1"
    assert got["device_time"] == measured_at.replace(tzinfo=None).isoformat()
    assert got["raw_hex"] == "1e9e00"

    # The cuff reports its memory again: the gateway knows the reading was delivered and holds nothing.
    again = pipeline.outbox.commit([reading])
    assert again.already_delivered == 1
    assert pipeline.outbox.stats().depth == 0

    # The ack was lost and the gateway retransmits: ingest stores nothing new and acks again.
    acks_before = pipeline.ingest.counters().messages_acked
    retransmit(pipeline, [reading])
    await wait_until(lambda: pipeline.ingest.counters().messages_acked > acks_before, "the retransmission")
    assert pipeline.ingest.counters().readings_duplicate == 1
    assert pipeline.ingest.counters().readings_stored == 1
    assert [r["reading_id"] for r in api_readings(pipeline)] == [reading.reading_id]


def retransmit(p: Pipeline, readings: list[BloodPressureReading]) -> None:
    batch = ReadingsBatch(gateway_id=GATEWAY_ID, sent_at=datetime.now(UTC), readings=tuple(readings))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(*p.broker.credentials(GATEWAY_ID))
    client.connect(p.broker.host, p.broker.port)
    client.loop_start()
    client.publish(readings_topic(GATEWAY_ID), batch.model_dump_json(), qos=1).wait_for_publish(WAIT_S)
    client.disconnect()
    client.loop_stop()


async def test_a_burst_arrives_complete_and_without_duplicates(pipeline: Pipeline) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    readings = [cuff_reading(start + timedelta(minutes=10 * i), 120 + i % 40) for i in range(250)]
    pipeline.outbox.commit(readings)
    pipeline.forwarder.wake()
    await wait_until(lambda: pipeline.outbox.stats().depth == 0, "acks for 250 readings")
    got = [r["reading_id"] for r in api_readings(pipeline)]
    assert sorted(got) == sorted(r.reading_id for r in readings)
    assert len(set(got)) == len(got) == 250
