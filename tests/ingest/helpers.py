"""Test helpers for ingest: readings, a gateway-side MQTT client, a seeded clinic database."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConsumer, PipelineParts
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
from storage.clinic.models import DeadLetter, DeadLetterScope, MeterKind
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings import ReadingStoreUnavailable, SqliteReadingStore, WriteResult
from storage.readings.protocol import AnyReading
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.payload import ReadingsAck, ReadingsBatch
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading
from vitals.topics import acks_topic, readings_topic

CUFF = DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number="CUFF-1")
GLUCOMETER = DeviceIdentity(manufacturer="Acme Medical", model="GL-2", serial_number="GLU-1")
STRANGER_CUFF = DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number="NOT-BOUND")
T0 = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
WAIT_S = 30.0
SESSION_EXPIRY_S = 300


def bp_reading(
    index: int,
    *,
    patient_id: str | None = "p1",
    device: DeviceIdentity = CUFF,
    systolic: float = 128.0,
    diastolic: float = 82.0,
    user_id: int | None = 1,
) -> BloodPressureReading:
    measured_at = T0 + timedelta(minutes=index)
    device_time = measured_at.replace(tzinfo=None)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            device,
            device_time,
            user_id,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=None,
            pulse_bpm=70.0,
        ),
        device=device,
        patient_id=patient_id,
        measured_at=measured_at,
        device_time=device_time,
        unit="mmHg",
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70.0,
        user_id=user_id,
        raw_hex="1e80005200",
    )


def glucose_reading(index: int, *, patient_id: str | None = "p1", value: float = 104.0) -> GlucoseReading:
    base_time = (T0 + timedelta(minutes=index)).replace(tzinfo=None)
    return GlucoseReading(
        reading_id=glucose_reading_id(GLUCOMETER, index, base_time),
        device=GLUCOMETER,
        patient_id=patient_id,
        measured_at=T0 + timedelta(minutes=index),
        device_time=base_time,
        sequence_number=index,
        unit="mg/dL",
        glucose=value,
    )


def batch_json(gateway_id: str, readings: Sequence[AnyReading]) -> bytes:
    return (
        ReadingsBatch(gateway_id=gateway_id, sent_at=datetime.now(UTC), readings=tuple(readings))
        .model_dump_json()
        .encode()
    )


def seed_clinic(url: str, gateway_ids: Iterable[str]) -> sessionmaker[Session]:
    """A migrated clinic database: patients p1, p2; CUFF slot 1 -> p1 and GLUCOMETER -> p1 on every
    gateway; STRANGER_CUFF registered but bound nowhere."""
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Test Practice")
        enrol_patient(session, patient_id="p1", clinic_id="c1", given_name="A", family_name="B")
        enrol_patient(session, patient_id="p2", clinic_id="c1", given_name="C", family_name="D")
        for device, kind in ((CUFF, MeterKind.BLOOD_PRESSURE), (GLUCOMETER, MeterKind.GLUCOSE)):
            register_meter(session, clinic_id="c1", device=device, kind=kind)
        register_meter(session, clinic_id="c1", device=STRANGER_CUFF, kind=MeterKind.BLOOD_PRESSURE)
        for gateway_id in gateway_ids:
            register_gateway(session, gateway_id=gateway_id, clinic_id="c1", mqtt_password="unused")
            bind_meter(
                session, gateway_id=gateway_id, meter_key=CUFF.meter_key, patient_id="p1", device_user_id=1
            )
            bind_meter(session, gateway_id=gateway_id, meter_key=GLUCOMETER.meter_key, patient_id="p1")
    return sessions


def stored_ids(sqlite_path: Path) -> list[str]:
    """Every reading_id row in a SqliteReadingStore file (a fresh connection, like another process)."""
    with sqlite3.connect(sqlite_path, timeout=10) as conn:
        return [row[0] for row in conn.execute("SELECT reading_id FROM readings")]


def stored_count(sqlite_path: Path) -> int:
    """How many rows a SqliteReadingStore file holds (cheap enough to poll every few ms)."""
    with sqlite3.connect(sqlite_path, timeout=10) as conn:
        count: int = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        return count


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S, interval_s: float = 0.05) -> bool:
    """Poll `condition` until true or the timeout passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


class GatewayClient:
    """The gateway's side of MQTT, for tests: publish batches (QoS 1) and collect application acks."""

    def __init__(self, host: str, port: int, username: str, password: str, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.acks: list[ReadingsAck] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-gw-{gateway_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = lambda c, *_: c.subscribe(acks_topic(gateway_id), qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        # Connect asynchronously: a gateway user just added reaches the broker's password file on its
        # SIGHUP reload, and paho retries a refused connect by itself.
        # A persistent session, as the real gateway keeps, so acks survive a broker restart.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.reconnect_delay_set(1, 2)
        self._client.connect_async(host, port, keepalive=30, clean_start=False, properties=props)
        self._client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError("gateway test client did not subscribe to its acks")

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        ack = ReadingsAck.model_validate_json(message.payload)
        with self._lock:
            self.acks.append(ack)

    def publish_raw(
        self, payload: bytes, *, topic: str | None = None, wait: bool = True
    ) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic or readings_topic(self.gateway_id), payload, qos=1)
        if wait:
            info.wait_for_publish(WAIT_S)
        return info

    def publish(self, readings: Sequence[AnyReading], *, wait: bool = True) -> bytes:
        payload = batch_json(self.gateway_id, readings)
        self.publish_raw(payload, wait=wait)
        return payload

    def stored_acked(self) -> set[str]:
        with self._lock:
            return {rid for ack in self.acks for rid in ack.stored}

    def rejected_acked(self) -> dict[str, str]:
        with self._lock:
            return {r.reading_id: r.reason for ack in self.acks for r in ack.rejected}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class FlakyStore:
    """A real SQLite store behind a switch that makes every write fail as 'unavailable'."""

    def __init__(self, store: SqliteReadingStore) -> None:
        self._store = store
        self.down = threading.Event()
        self.failed_writes = 0

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if self.down.is_set():
            self.failed_writes += 1
            raise ReadingStoreUnavailable("test: store switched off")
        return self._store.write_batch(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class StoreWithABug:
    """A real SQLite store that trips over one particular reading, as a bug in a store would."""

    def __init__(self, store: SqliteReadingStore, trigger: str) -> None:
        self._store = store
        self._trigger = trigger

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if any(r.reading_id == self._trigger for r in readings):
            raise RuntimeError("test: a bug in the store")
        return self._store.write_batch(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class StoreDownWhileFileExists:
    """A real SQLite store whose writes fail as 'unavailable' while a file exists (a switch another
    process can flip)."""

    def __init__(self, store: SqliteReadingStore, switch: Path) -> None:
        self._store = store
        self._switch = switch

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if self._switch.exists():
            raise ReadingStoreUnavailable("test: store switched off")
        return self._store.write_batch(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class StoreFailingItsFirstWrite:
    """A real SQLite store whose first write fails as 'unavailable' once another write has committed
    beside it (a cycle handed over behind it, on the pipeline process's other committer; the marker
    file with the suffix ".behind" says it did), and which
    logs the reading ids of every write it makes to `writes_log`, one per line (written, not
    distinct: a reading written twice shows twice)."""

    def __init__(self, store: SqliteReadingStore, marker: Path, writes_log: Path) -> None:
        self._store = store
        self._marker = marker
        self._log = writes_log
        self._lock = threading.Lock()
        self._another_committed = threading.Event()

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        with self._lock:
            first = not self._marker.exists()
            self._marker.touch()
        if first:
            if self._another_committed.wait(WAIT_S):
                self._marker.with_suffix(".behind").touch()  # the case under test did happen
            raise ReadingStoreUnavailable("test: the first write fails")
        result = self._store.write_batch(readings)
        with self._lock, self._log.open("a", encoding="utf-8") as log:
            log.writelines(f"{r.reading_id}\n" for r in readings)
        self._another_committed.set()
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class StoreThatDies:
    """A real SQLite store whose process dies on one particular reading (as a crash in native code,
    or the kernel's OOM killer, would end it), or that hangs on it for `hang_s`."""

    def __init__(self, store: SqliteReadingStore, trigger: str, *, hang_s: float = 0.0) -> None:
        self._store = store
        self._trigger = trigger
        self._hang_s = hang_s

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if any(r.reading_id == self._trigger for r in readings):
            if self._hang_s:
                time.sleep(self._hang_s)
            else:
                os._exit(139)
        return self._store.write_batch(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def open_sqlite_pipeline_parts(
    store_path: str,
    clinic_url: str,
    *,
    bug_reading_id: str | None = None,
    closed_while: str | None = None,
    down_while: str | None = None,
    deadly_reading_id: str | None = None,
    hang_reading_id: str | None = None,
    fail_first_write: str | None = None,
    writes_log: str | None = None,
) -> PipelineParts:
    """What an ingest pipeline process opens in the tests (run in the child, hence module-level):
    the SQLite store at `store_path` and the clinic database at `clinic_url`. `bug_reading_id`: the
    store trips over that reading; `closed_while`: the store cannot be opened while that file exists;
    `down_while`: its writes fail while that file exists; `deadly_reading_id`: the process dies on
    that reading; `hang_reading_id`: the store hangs on it for a minute; `fail_first_write` (a marker
    file) and `writes_log`: StoreFailingItsFirstWrite."""
    if closed_while is not None and Path(closed_while).exists():
        raise ReadingStoreUnavailable("test: the store cannot be opened")
    store = SqliteReadingStore(store_path)
    engine = create_clinic_engine(clinic_url)

    def close() -> None:
        store.close()
        engine.dispose()

    writer: object = store
    if bug_reading_id:
        writer = StoreWithABug(store, bug_reading_id)
    elif down_while:
        writer = StoreDownWhileFileExists(store, Path(down_while))
    elif deadly_reading_id:
        writer = StoreThatDies(store, deadly_reading_id)
    elif hang_reading_id:
        writer = StoreThatDies(store, hang_reading_id, hang_s=60.0)
    elif fail_first_write and writes_log:
        writer = StoreFailingItsFirstWrite(store, Path(fail_first_write), Path(writes_log))
    return PipelineParts(writer, ClinicRepository(session_factory(engine)), close)  # type: ignore[arg-type]


def dead_letters(sessions: sessionmaker[Session]) -> list[DeadLetter]:
    with sessions() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.dead_letter_id)))


def check_a_bug_is_isolated(
    consumer: IngestConsumer,
    gateway: GatewayClient,
    store_path: Path,
    sessions: sessionmaker[Session],
    bad: AnyReading,
) -> DeadLetter:
    """Publish a good message, one whose reading trips the store's bug, two more good ones: the good
    readings are stored and acked, the bad message is dead-lettered with its raw bytes, nothing is
    left in flight. Returns the dead letter."""
    good = [bp_reading(1), bp_reading(3), bp_reading(4)]
    gateway.publish([good[0]])
    gateway.publish([bad])
    gateway.publish(good[1:])
    expected = {r.reading_id for r in good}
    assert wait_until(lambda: gateway.stored_acked() == expected), consumer.counters()
    assert sorted(stored_ids(store_path)) == sorted(expected)
    assert wait_until(lambda: consumer.counters().in_flight_messages == 0)
    [letter] = dead_letters(sessions)
    assert letter.scope is DeadLetterScope.MESSAGE
    assert bad.reading_id.encode() in letter.payload  # its raw bytes are kept
    return letter
