"""The issue's "done when": the collector procedures sync virtual meters over the bleak backend.

* 1,000 stored glucose records with context come through RACP, then only the new ones;
* a meter that drops the link mid-transfer loses nothing on the next sync;
* the blood-pressure collector gets every stored cuff record;
* an unbonded client is refused by a meter that requires bonding.

The procedures are device_drivers.procedures (the gateway's own code); only the backend is virtual.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError

from device_drivers.procedures.blood_pressure import collect_blood_pressure
from device_drivers.procedures.client import ProcedureTimeouts
from device_drivers.procedures.errors import GattOperationFailed, MeterDisconnected
from device_drivers.procedures.glucose import sync_glucose_records
from device_drivers.procedures.session import run_blood_pressure_session, run_glucose_session
from device_drivers.profiles.glucose import CarbohydrateCode, MealCode
from device_drivers.quirks import quirks_for
from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.radio import VirtualRadio

from .conftest import START

logger = logging.getLogger(__name__)

WAIT_S = 10.0
RECORD_COUNT = 1_000
#: The whole 1,000-record sync over the virtual link must take seconds, not minutes.
SYNC_BUDGET_S = 20.0


def fill_glucose(meter: VirtualGlucoseMeter, count: int, first_hour: int = 0) -> None:
    for index in range(count):
        meter.add_record(
            taken_at=START + dt.timedelta(hours=first_hour + index),
            glucose_mg_dl=80 + (first_hour + index) % 120,
            meal=MealCode.POSTPRANDIAL if index % 2 else MealCode.FASTING,
            carbohydrate_id=CarbohydrateCode.LUNCH if index % 2 else None,
            carbohydrate_grams=60.0 if index % 2 else None,
        )


@asynccontextmanager
async def connected(
    radio: VirtualRadio, address: str, lost: asyncio.Event, *, pair: bool = True
) -> AsyncIterator[BleakClient]:
    device = await BleakScanner.find_device_by_address(address, timeout=WAIT_S, backend=radio.scanner_backend)
    assert device is not None, "meter not advertising"
    client = BleakClient(
        device, lambda _c: lost.set(), backend=radio.client_backend, pair=pair, timeout=WAIT_S
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


@pytest.mark.parametrize("persona_key", ["contour-like", "accu-chek-like"])
async def test_glucose_sync_of_1000_records_then_only_the_new_ones(
    radio: VirtualRadio, clock: SimulationClock, persona_key: str
) -> None:
    meter = make_meter(persona_key, clock=clock, serial_number="G-1000", fixed_passkey=246810)
    assert isinstance(meter, VirtualGlucoseMeter)
    fill_glucose(meter, RECORD_COUNT)
    await radio.add_meter(meter)

    lost = asyncio.Event()
    started = time.perf_counter()
    async with connected(radio, meter.address, lost) as client:
        session = await run_glucose_session(
            client, last_sequence_number=None, gateway_timezone=dt.UTC, now=clock.now, disconnected=lost
        )
    elapsed_s = time.perf_counter() - started
    logger.info("1000-record glucose sync", extra={"elapsed_s": round(elapsed_s, 3), "persona": persona_key})
    sync = session.sync
    assert [record.measurement.sequence_number for record in sync.records] == list(range(RECORD_COUNT))
    assert sync.highest_sequence_number == RECORD_COUNT - 1
    with_context = [record for record in sync.records if record.context is not None]
    assert len(with_context) == RECORD_COUNT  # every record had a meal context
    assert {record.context.meal for record in with_context if record.context} == {
        MealCode.FASTING,
        MealCode.POSTPRANDIAL,
    }
    assert sync.missing_contexts == () and sync.unmatched_contexts == ()
    assert sync.records[5].measurement.glucose_mg_dl == 85
    assert elapsed_s < SYNC_BUDGET_S, f"1,000 records took {elapsed_s:.1f} s"

    fill_glucose(meter, 3, first_hour=RECORD_COUNT)
    lost = asyncio.Event()
    async with connected(radio, meter.address, lost, pair=False) as client:
        again = await run_glucose_session(
            client,
            last_sequence_number=sync.highest_sequence_number,
            gateway_timezone=dt.UTC,
            now=clock.now,
            disconnected=lost,
        )
    assert [record.measurement.sequence_number for record in again.sync.records] == [1000, 1001, 1002]
    assert again.sync.highest_sequence_number == 1002


async def test_meter_dropping_the_link_mid_transfer_loses_nothing(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = make_meter("contour-like", clock=clock, serial_number="G-DROP")
    assert isinstance(meter, VirtualGlucoseMeter)
    fill_glucose(meter, RECORD_COUNT)
    await radio.add_meter(meter)
    meter.disconnect_after_records = 437

    lost = asyncio.Event()
    async with connected(radio, meter.address, lost) as client:
        with pytest.raises(MeterDisconnected) as dropped:
            await sync_glucose_records(client, last_sequence_number=None, disconnected=lost)
    partial = dropped.value.partial
    assert partial is not None
    first = [record.measurement.sequence_number for record in partial.records]
    assert first == list(range(437))
    assert partial.highest_sequence_number == 436

    lost = asyncio.Event()
    async with connected(radio, meter.address, lost, pair=False) as client:
        rest = await sync_glucose_records(
            client, last_sequence_number=partial.highest_sequence_number, disconnected=lost
        )
    second = [record.measurement.sequence_number for record in rest.records]
    assert sorted(first + second) == list(range(RECORD_COUNT))
    assert all(record.context is not None for record in rest.records)


async def test_reversed_sequence_meter_is_read_with_its_quirk(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = make_meter("taidoc-like", clock=clock, serial_number="T-1")
    assert isinstance(meter, VirtualGlucoseMeter)
    fill_glucose(meter, 12)
    await radio.add_meter(meter)
    lost = asyncio.Event()
    async with connected(radio, meter.address, lost, pair=False) as client:
        session = await run_glucose_session(
            client, last_sequence_number=None, gateway_timezone=dt.UTC, now=clock.now, disconnected=lost
        )
    assert session.identity.quirks.sequence_numbers_reversed
    assert session.sync.highest_sequence_number is None  # no cursor for reversed numbering
    newest = session.sync.records[0].measurement
    assert newest.sequence_number == 0
    assert newest.glucose_mg_dl == 80 + 11  # sequence 0 is the newest record


@pytest.mark.parametrize("persona_key", ["silvercrest-like", "and-like", "omron-like"])
async def test_blood_pressure_collector_gets_every_stored_cuff_record(persona_key: str) -> None:
    # A fast clock: the cuff lingers two simulated seconds after its last indication.
    clock = SimulationClock(start=START, speed=200.0)
    async with VirtualRadio() as radio:
        cuff = make_meter(persona_key, clock=clock, serial_number="BP-60")
        assert isinstance(cuff, VirtualBloodPressureCuff)
        for index in range(60):
            error = index % 17 == 16
            cuff.add_record(
                taken_at=START + dt.timedelta(hours=12 * index),
                systolic_mmhg=None if error else 110 + index,
                diastolic_mmhg=None if error else 70 + index % 20,
                pulse_bpm=None if error else 60 + index % 30,
            )
        await radio.add_meter(cuff)
        await cuff.enter_pairing_mode()
        lost = asyncio.Event()
        async with connected(radio, cuff.address, lost) as client:
            session = await run_blood_pressure_session(
                client, gateway_timezone=dt.UTC, now=clock.now, disconnected=lost
            )
    measurements = session.collection.measurements
    assert len(measurements) == 60
    valid = [m for m in measurements if m.valid]
    assert [int(float(m.systolic)) for m in valid] == [110 + i for i in range(60) if i % 17 != 16]
    assert len(measurements) - len(valid) == 3  # the "Err" readings arrive, marked invalid
    if persona_key == "and-like":
        assert session.clock.write is not None and session.clock.write.refused is None
    assert session.identity.quirks == quirks_for(cuff.persona.manufacturer, cuff.persona.model)


async def test_unbonded_collector_is_refused_by_a_meter_that_requires_bonding(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = make_meter("contour-like", clock=clock, serial_number="G-LOCK")
    assert isinstance(meter, VirtualGlucoseMeter)
    fill_glucose(meter, 5)
    await radio.add_meter(meter)
    lost = asyncio.Event()
    async with connected(radio, meter.address, lost, pair=False) as client:
        with pytest.raises(GattOperationFailed):
            await sync_glucose_records(client, last_sequence_number=None, disconnected=lost)
    assert meter.records_sent_total == 0


async def test_omron_like_cuff_goes_silent_when_its_advertising_window_closes() -> None:
    clock = SimulationClock(start=START, speed=100.0)  # the 120 s window lasts 1.2 real seconds
    async with VirtualRadio() as radio:
        cuff = make_meter("omron-like", clock=clock, serial_number="O-WINDOW")
        assert isinstance(cuff, VirtualBloodPressureCuff)
        await radio.add_meter(cuff)
        silent = asyncio.Event()
        cuff.add_listener(lambda event: silent.set() if event == "silent" else None)
        await cuff.take_measurement(taken_at=clock.now(), systolic_mmhg=128, diastolic_mmhg=81, pulse_bpm=64)
        found = await BleakScanner.find_device_by_address(
            cuff.address, timeout=WAIT_S, backend=radio.scanner_backend
        )
        assert found is not None
        await asyncio.wait_for(silent.wait(), WAIT_S)
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient(cuff.address, backend=radio.client_backend, timeout=0.3).connect()


async def test_and_like_cuff_sends_nothing_until_the_time_is_written() -> None:
    clock = SimulationClock(start=START, speed=200.0)
    async with VirtualRadio() as radio:
        cuff = make_meter("and-like", clock=clock, serial_number="AD-1")
        assert isinstance(cuff, VirtualBloodPressureCuff)
        for index in range(4):
            cuff.add_record(
                taken_at=START + dt.timedelta(hours=index), systolic_mmhg=140, diastolic_mmhg=90, pulse_bpm=70
            )
        await radio.add_meter(cuff)
        lost = asyncio.Event()
        async with connected(radio, cuff.address, lost) as client:
            silent = await collect_blood_pressure(
                client, timeouts=ProcedureTimeouts(first_indication_s=0.5), disconnected=lost
            )
        assert silent.measurements == ()
        lost = asyncio.Event()
        async with connected(radio, cuff.address, lost, pair=False) as client:
            session = await run_blood_pressure_session(
                client, gateway_timezone=dt.UTC, now=clock.now, disconnected=lost
            )
        assert session.clock.write is not None
        assert len(session.collection.measurements) == 4
