"""Every reading the virtual meters hold reaches the broker and is acked once (device_drivers'
procedures as the collector, bleak over the virtual-meter backend, a private Mosquitto); the cuffs
include a BLS 1.1 one whose readings come as stored records over RACP."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.app import Gateway
from gateway.bindings import Bindings, MeterProfile
from gateway.collect import default_collector
from gateway.pairing import pair
from testbed.acker import Acker
from tests.gateway.helpers import expected_keys, received_keys, wait_until
from tests.gateway.test_gateway_app import GW, options
from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import MeterBinding
from vitals.readings import BloodPressureReading

pytestmark = pytest.mark.mosquitto


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


async def test_every_reading_held_by_the_meters_reaches_the_broker_acked_once(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio
) -> None:
    mqtt_broker.add_gateway(GW)
    clock = SimulationClock()
    now = dt.datetime.now(dt.UTC)
    contour = make_meter("contour-like", clock=clock, serial_number="GL-E2E-1")
    accu = make_meter("accu-chek-like", clock=clock, serial_number="GL-E2E-2")
    silver = make_meter("silvercrest-like", clock=clock, serial_number="BP-E2E-1")
    omron = make_meter("omron-like", clock=clock, serial_number="BP-E2E-2")
    bls11 = make_meter("bls11-like", clock=clock, serial_number="BP-E2E-3")
    assert isinstance(contour, VirtualGlucoseMeter) and isinstance(accu, VirtualGlucoseMeter)
    assert isinstance(silver, VirtualBloodPressureCuff) and isinstance(omron, VirtualBloodPressureCuff)
    assert isinstance(bls11, VirtualEnhancedBloodPressureCuff)
    for i in range(30):
        at = now - dt.timedelta(hours=30 - i)
        contour.add_record(taken_at=at, glucose_mg_dl=90 + i)
        accu.add_record(taken_at=at, glucose_mg_dl=110 + i)
        silver.add_record(taken_at=at, systolic_mmhg=120 + i % 20, diastolic_mmhg=80, pulse_bpm=70)
        omron.add_record(taken_at=at, systolic_mmhg=130, diastolic_mmhg=85, pulse_bpm=66, user_id=1 + i % 2)
        bls11.add_record(taken_at=at, systolic_mmhg=125, diastolic_mmhg=82, pulse_bpm=64)
    meters = [contour, accu, silver, omron, bls11]
    for meter in meters:
        await radio.add_meter(meter)
    state = tmp_path / "state"
    bindings = Bindings(state / "bindings.json", GW).load()
    await pair(
        bindings,
        contour.address,
        profile=MeterProfile.GLUCOSE,
        patient_id="p-1",
        client_backend=radio.client_backend,
    )
    await pair(
        bindings,
        accu.address,
        profile=MeterProfile.GLUCOSE,
        patient_id="p-2",
        client_backend=radio.client_backend,
    )
    await pair(bindings, silver.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="p-3", user_id=1,
               client_backend=radio.client_backend)  # fmt: skip
    await pair(bindings, bls11.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="p-6",
               client_backend=radio.client_backend)  # fmt: skip
    await omron.enter_pairing_mode()
    paired_omron = await pair(bindings, omron.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="p-4",
                              user_id=1, client_backend=radio.client_backend)  # fmt: skip
    await omron.leave_pairing_mode()
    # The second user of the omron-like cuff is somebody else.
    bindings.add_paired_meter(
        paired_omron, MeterBinding(meter_key=paired_omron.meter_key, user_id=2, patient_id="p-5")
    )

    acker = Acker(mqtt_broker).start()
    gateway = Gateway(
        options(mqtt_broker, state),
        default_collector(dt.UTC),
        scanner_backend=radio.scanner_backend,
        client_backend=radio.client_backend,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await omron.take_measurement(taken_at=dt.datetime.now(dt.UTC), systolic_mmhg=141, diastolic_mmhg=91,
                                     pulse_bpm=72, user_id=2)  # fmt: skip
        await wait_until(lambda: expected_keys(meters) <= received_keys(acker), 120, "every held reading")
        # The meters keep measuring: new readings follow.
        await contour.take_measurement(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=150)
        await omron.take_measurement(taken_at=dt.datetime.now(dt.UTC), systolic_mmhg=150, diastolic_mmhg=95,
                                     pulse_bpm=80, user_id=1)  # fmt: skip
        await wait_until(lambda: expected_keys(meters) <= received_keys(acker), 60, "new readings")
        await wait_until(lambda: gateway.outbox.stats().depth == 0, 30, "outbox drained")
        assert gateway.outbox.stats().unbound == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        acker.stop()
    assert set(acker.acked.values()) == {1}
    patients = {r.patient_id for r in acker.readings.values()}
    assert patients == {"p-1", "p-2", "p-3", "p-4", "p-5", "p-6"}
    omron_by_slot = {
        (r.user_id, r.patient_id) for r in acker.readings.values() if isinstance(r, BloodPressureReading)
        and r.device.serial_number == "BP-E2E-2"
    }  # fmt: skip
    assert omron_by_slot == {(1, "p-4"), (2, "p-5")}
