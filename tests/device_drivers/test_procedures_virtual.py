"""The collector procedures against the virtual meters: real bleak BleakClient, bumble GATT servers.

The same procedure code that runs on a Raspberry Pi's BlueZ runs here on the virtual-meter bleak
backend (DESIGN.md, "Real components"). Meter clocks are set 3 minutes fast in a UTC+1 home.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient, BleakScanner

from device_drivers import quirks
from device_drivers.procedures.blood_pressure import CollectionEnd
from device_drivers.procedures.client import ProcedureTimeouts
from device_drivers.procedures.clock import ClockReading, ClockSource
from device_drivers.procedures.errors import MeterDisconnected
from device_drivers.procedures.glucose import sync_glucose_records
from device_drivers.procedures.session import run_blood_pressure_session, run_glucose_session
from device_drivers.profiles.glucose import MealCode
from device_drivers.readings import device_identity, glucose_reading
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio

WAIT_S = 10.0
HOME = dt.timezone(dt.timedelta(hours=1))
DRIFT = dt.timedelta(minutes=3)
START = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
TIMEOUTS = ProcedureTimeouts(
    gatt_operation_s=WAIT_S,
    record_silence_s=5.0,
    racp_procedure_s=30.0,
    abort_response_s=2.0,
    first_indication_s=3.0,
    quiet_after_records_s=1.0,
)
# The virtual cuff lingers 2 s after its last indication before dropping the link: wait longer than that.
LINGERING_CUFF = dataclasses.replace(TIMEOUTS, quiet_after_records_s=6.0)


@pytest.fixture
def clock() -> SimulationClock:
    return SimulationClock(start=START, speed=1.0)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as started:
        yield started


async def add(radio: VirtualRadio, clock: SimulationClock, persona: str, serial: str) -> VirtualMeter:
    return await radio.add_meter(
        make_meter(
            persona, clock=clock, serial_number=serial, utc_offset=dt.timedelta(hours=1), clock_drift=DRIFT
        )
    )


async def connect(
    radio: VirtualRadio, meter: VirtualMeter, lost: asyncio.Event, *, pair: bool = True
) -> BleakClient:
    device = await BleakScanner.find_device_by_address(
        meter.address, timeout=WAIT_S, backend=radio.scanner_backend
    )
    assert device is not None, "meter not discovered"
    client = BleakClient(
        device, lambda _c: lost.set(), backend=radio.client_backend, pair=pair, timeout=WAIT_S
    )
    await client.connect()
    return client


async def test_contour_like_first_then_incremental_sync(radio: VirtualRadio, clock: SimulationClock) -> None:
    """First sync gets every record with its context; the next sync gets only the new one; then nothing."""
    meter = await add(radio, clock, "contour-like", "G-10")
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=101)  # type: ignore[attr-defined]
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=143, meal=MealCode.POSTPRANDIAL)  # type: ignore[attr-defined]
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=88)  # type: ignore[attr-defined]
    await meter.update_advertising()
    lost = asyncio.Event()
    client = await connect(radio, meter, lost)
    try:
        session = await run_glucose_session(
            client,
            last_sequence_number=None,
            gateway_timezone=HOME,
            now=clock.now,
            timeouts=TIMEOUTS,
            disconnected=lost,
        )
    finally:
        await client.disconnect()
    assert session.identity.quirks is quirks.ASCENSIA
    assert session.identity.device_information.serial_number == "G-10"
    sync = session.sync
    assert [r.measurement.sequence_number for r in sync.records] == [0, 1, 2]
    assert [float(r.measurement.glucose_mg_dl or 0) for r in sync.records] == [101, 143, 88]
    assert sync.records[1].context is not None
    assert sync.records[1].context.meal is MealCode.POSTPRANDIAL
    assert sync.highest_sequence_number == 2
    reading = session.clock.reading
    assert isinstance(reading, ClockReading)
    assert abs(reading.offset - DRIFT) < dt.timedelta(seconds=5)
    # Readings carry the corrected time: the meter stamped START + 1 h + 3 min, true time is START.
    device = device_identity(session.identity.device_information, address=meter.address)
    first = glucose_reading(
        sync.records[0], device=device, clock=reading, gateway_timezone=HOME, received_at=clock.now()
    )
    assert abs(first.measured_at - START) < dt.timedelta(seconds=5)

    meter.add_record(taken_at=clock.now(), glucose_mg_dl=120)  # type: ignore[attr-defined]
    lost = asyncio.Event()
    client = await connect(radio, meter, lost)
    try:
        second = await sync_glucose_records(
            client, last_sequence_number=2, timeouts=TIMEOUTS, disconnected=lost
        )
        third = await sync_glucose_records(
            client, last_sequence_number=3, timeouts=TIMEOUTS, disconnected=lost
        )
    finally:
        await client.disconnect()
    assert [r.measurement.sequence_number for r in second.records] == [3]
    assert second.highest_sequence_number == 3
    assert third.records == ()
    assert third.highest_sequence_number == 3


async def test_accu_chek_like_uses_date_time(radio: VirtualRadio, clock: SimulationClock) -> None:
    """Roche-like: passkey pairing, clock read from Date Time 0x2A08, records over RACP."""
    meter = await add(radio, clock, "accu-chek-like", "R-10")
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=97)  # type: ignore[attr-defined]
    lost = asyncio.Event()
    client = await connect(radio, meter, lost)
    try:
        session = await run_glucose_session(
            client,
            last_sequence_number=None,
            gateway_timezone=HOME,
            now=clock.now,
            timeouts=TIMEOUTS,
            disconnected=lost,
        )
    finally:
        await client.disconnect()
    assert session.identity.quirks is quirks.ROCHE
    assert isinstance(session.clock.reading, ClockReading)
    assert session.clock.reading.source is ClockSource.DATE_TIME
    assert [r.measurement.sequence_number for r in session.sync.records] == [0]


async def test_taidoc_like_newest_record_only(radio: VirtualRadio, clock: SimulationClock) -> None:
    """TaiDoc-like: no clock, reversed numbering; the first record (the newest) is fetched."""
    meter = await add(radio, clock, "taidoc-like", "T-10")
    meter.add_record(taken_at=clock.now() - dt.timedelta(hours=2), glucose_mg_dl=110)  # type: ignore[attr-defined]
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=131)  # type: ignore[attr-defined]
    lost = asyncio.Event()
    client = await connect(radio, meter, lost, pair=False)  # TaiDoc-like offers no pairing
    try:
        session = await run_glucose_session(
            client,
            last_sequence_number=None,
            gateway_timezone=HOME,
            now=clock.now,
            timeouts=TIMEOUTS,
            disconnected=lost,
        )
    finally:
        await client.disconnect()
    assert session.identity.quirks is quirks.TAIDOC
    assert session.clock.reading is None
    assert [float(r.measurement.glucose_mg_dl or 0) for r in session.sync.records] == [131]
    assert session.sync.highest_sequence_number is None


async def test_link_lost_mid_transfer_keeps_partial_records(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """The meter drops the link after one record: MeterDisconnected carries that record."""
    meter = await add(radio, clock, "contour-like", "G-11")
    for value in (100, 101, 102):
        meter.add_record(taken_at=clock.now(), glucose_mg_dl=value)  # type: ignore[attr-defined]
    await meter.update_advertising()
    meter.disconnect_after_records = 1  # type: ignore[attr-defined]
    lost = asyncio.Event()
    client = await connect(radio, meter, lost)
    try:
        with pytest.raises(MeterDisconnected) as caught:
            await sync_glucose_records(
                client, last_sequence_number=None, timeouts=TIMEOUTS, disconnected=lost
            )
    finally:
        if client.is_connected:
            await client.disconnect()
    assert caught.value.partial is not None
    assert [r.measurement.sequence_number for r in caught.value.partial.records] == [0]
    assert caught.value.partial.highest_sequence_number == 0


async def test_and_like_cuff_needs_the_time_written(radio: VirtualRadio, clock: SimulationClock) -> None:
    """A&D-like: time written before indications; the cuff sends its readings, then drops the link."""
    cuff = await add(radio, clock, "and-like", "A-10")
    cuff.add_record(taken_at=clock.now(), systolic_mmhg=128, diastolic_mmhg=82, pulse_bpm=70)  # type: ignore[attr-defined]
    cuff.add_record(taken_at=clock.now(), systolic_mmhg=None, diastolic_mmhg=None, pulse_bpm=None)  # type: ignore[attr-defined]
    lost = asyncio.Event()
    client = await connect(radio, cuff, lost)
    try:
        session = await run_blood_pressure_session(
            client, gateway_timezone=HOME, now=clock.now, timeouts=LINGERING_CUFF, disconnected=lost
        )
    finally:
        if client.is_connected:
            await client.disconnect()
    assert session.identity.quirks is quirks.A_AND_D
    assert session.clock.write is not None
    assert session.clock.write.written
    collection = session.collection
    assert [float(m.systolic) if m.valid else None for m in collection.measurements] == [128.0, None]
    assert collection.ended_by is CollectionEnd.DISCONNECTED


async def test_silvercrest_like_cuff_sends_every_stored_reading(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """A plain BLS cuff: all stored readings arrive as indications, no time write needed."""
    cuff = await add(radio, clock, "silvercrest-like", "S-10")
    for systolic in (118, 122, 135):
        cuff.add_record(  # type: ignore[attr-defined]
            taken_at=clock.now(), systolic_mmhg=systolic, diastolic_mmhg=78, pulse_bpm=64
        )
    lost = asyncio.Event()
    client = await connect(radio, cuff, lost)
    try:
        session = await run_blood_pressure_session(
            client,
            gateway_timezone=HOME,
            now=clock.now,
            timeouts=TIMEOUTS,
            disconnected=lost,
            clock_tolerance=dt.timedelta(hours=1),
        )
    finally:
        if client.is_connected:
            await client.disconnect()
    assert session.identity.quirks is quirks.STANDARD
    assert session.clock.write is None  # 3 min drift is inside the 1 h tolerance given here
    assert [float(m.systolic) for m in session.collection.measurements] == [118.0, 122.0, 135.0]
