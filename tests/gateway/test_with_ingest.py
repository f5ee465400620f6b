"""Gateway -> Mosquitto -> the real ingest (ingest/) -> SQLite reading store, acks back.

The same chain as production on the clinic side: ingest validates each reading against the clinic
database's bindings, stores it, and only then publishes the application ack that lets the gateway
delete it from its outbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.app import Gateway
from gateway.bindings import Bindings, MeterProfile
from gateway.collect import default_collector
from gateway.pairing import pair
from ingest import IngestConfig, IngestConsumer
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, enrol_patient, register_gateway, register_meter
from storage.clinic.models import MeterKind
from storage.clinic.repository import ClinicRepository, bind_meter
from storage.readings import SqliteReadingStore
from tests.gateway.helpers import wait_until
from tests.gateway.test_gateway_app import GW, options
from vitalgate.mosquitto import MosquittoBroker
from vitals.readings import DeviceIdentity

pytestmark = pytest.mark.mosquitto


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


def stored_ids(path: Path) -> set[str]:
    with sqlite3.connect(path, timeout=10) as conn:
        return {row[0] for row in conn.execute("SELECT reading_id FROM readings")}


async def test_readings_from_virtual_meters_are_stored_by_ingest_and_leave_the_outbox(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio
) -> None:
    mqtt_broker.add_gateway(GW)
    clock = SimulationClock()
    now = dt.datetime.now(dt.UTC)
    glucose_meter = make_meter("contour-like", clock=clock, serial_number="GL-ING-1")
    cuff = make_meter("silvercrest-like", clock=clock, serial_number="BP-ING-1")
    assert isinstance(glucose_meter, VirtualGlucoseMeter)
    assert isinstance(cuff, VirtualBloodPressureCuff)
    for i in range(20):
        glucose_meter.add_record(taken_at=now - dt.timedelta(hours=20 - i), glucose_mg_dl=100 + i)
        cuff.add_record(
            taken_at=now - dt.timedelta(hours=20 - i), systolic_mmhg=125, diastolic_mmhg=82, pulse_bpm=70
        )
    await radio.add_meter(glucose_meter)
    await radio.add_meter(cuff)

    state = tmp_path / "state"
    bindings = Bindings(state / "bindings.json", GW).load()
    paired_glucose = await pair(
        bindings, glucose_meter.address, profile=MeterProfile.GLUCOSE, patient_id="p-ing-1",
        client_backend=radio.client_backend,
    )  # fmt: skip
    paired_cuff = await pair(
        bindings, cuff.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="p-ing-2", user_id=1,
        client_backend=radio.client_backend,
    )  # fmt: skip

    # The clinic enrols the same patients, meters and bindings (vitalgate admin does this in production).
    url = f"sqlite:///{tmp_path / 'clinic.sqlite3'}"
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Test Practice")
        enrol_patient(session, patient_id="p-ing-1", clinic_id="c1", given_name="A", family_name="B")
        enrol_patient(session, patient_id="p-ing-2", clinic_id="c1", given_name="C", family_name="D")
        register_gateway(session, gateway_id=GW, clinic_id="c1", mqtt_password="unused")
        for meter, persona, kind in (
            (glucose_meter, glucose_meter.persona, MeterKind.GLUCOSE),
            (cuff, cuff.persona, MeterKind.BLOOD_PRESSURE),
        ):
            device = DeviceIdentity(
                manufacturer=persona.manufacturer, model=persona.model, serial_number=meter.serial_number
            )
            register_meter(session, clinic_id="c1", device=device, kind=kind)
        bind_meter(session, gateway_id=GW, meter_key=paired_glucose.meter_key, patient_id="p-ing-1")
        bind_meter(
            session, gateway_id=GW, meter_key=paired_cuff.meter_key, patient_id="p-ing-2", device_user_id=1
        )

    store_path = tmp_path / "readings.sqlite3"
    store = SqliteReadingStore(store_path)
    username, password = mqtt_broker.credentials("ingest")
    ingest = IngestConsumer(
        IngestConfig(
            host=mqtt_broker.host, port=mqtt_broker.port, username=username, password=password,
            client_id="ingest-gw-test", session_expiry_s=300,
        ),
        store,
        ClinicRepository(sessions),
    )  # fmt: skip
    ingest.start()
    assert ingest.wait_subscribed(30)
    gateway = Gateway(
        options(mqtt_broker, state),
        default_collector(dt.UTC),
        scanner_backend=radio.scanner_backend,
        client_backend=radio.client_backend,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await wait_until(lambda: len(stored_ids(store_path)) >= 40, 90, "40 readings stored by ingest")
        await wait_until(lambda: gateway.outbox.stats().depth == 0, 30, "outbox emptied by ingest's acks")
        assert gateway.outbox.stats().unbound == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        ingest.stop()
        store.close()
        sessions.kw["bind"].dispose()
    assert len(stored_ids(store_path)) == 40
