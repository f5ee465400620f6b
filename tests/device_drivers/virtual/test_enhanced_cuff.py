"""A BLS 1.1 cuff (Enhanced Blood Pressure Measurement and Blood Pressure Records over RACP, no
0x2A35) read by the procedures over the virtual radio, and the record segments they reassemble."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from bleak import BleakClient, BleakScanner

from device_drivers.procedures.blood_pressure import collect_blood_pressure
from device_drivers.procedures.blood_pressure_records import RecordAssembler, sync_blood_pressure_records
from device_drivers.procedures.client import ProcedureTimeouts
from device_drivers.profiles.blood_pressure import BloodPressureRecord, EnhancedBloodPressureMeasurement
from device_drivers.profiles.errors import DecodeError
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.radio import VirtualRadio

QUICK = ProcedureTimeouts(first_indication_s=5.0, quiet_after_records_s=0.5)


async def enhanced_cuff(radio: VirtualRadio, clock: SimulationClock) -> VirtualEnhancedBloodPressureCuff:
    cuff = make_meter("bls11-like", clock=clock, serial_number="BLS11-1")
    assert isinstance(cuff, VirtualEnhancedBloodPressureCuff)
    for i in range(3):
        cuff.add_record(
            taken_at=clock.now() - dt.timedelta(hours=3 - i), systolic_mmhg=120 + i, diastolic_mmhg=80,
            pulse_bpm=70, user_id=2,
        )  # fmt: skip
    await radio.add_meter(cuff)
    return cuff


async def test_records_come_reassembled_with_user_and_sequence_number(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """Each stored record arrives whole from its segments, with its sequence number and user index."""
    cuff = await enhanced_cuff(radio, clock)
    device = await BleakScanner.find_device_by_address(cuff.address, backend=radio.scanner_backend)
    assert device is not None
    async with BleakClient(device, backend=radio.client_backend, pair=True) as client:
        first = await sync_blood_pressure_records(client, last_sequence_number=None)
        again = await sync_blood_pressure_records(client, last_sequence_number=first.highest_sequence_number)
    assert [(r.sequence_number, r.measurement.user_id) for r in first.records] == [(0, 2), (1, 2), (2, 2)]
    assert [r.measurement.systolic.mantissa for r in first.records] == [120, 121, 122]
    assert [r.measurement for r in first.records] == [stored.measurement for stored in cuff.records]
    assert cuff.segments_sent > len(cuff.records)
    assert first.undecodable == ()
    assert (again.records, again.highest_sequence_number) == ((), 2)


async def test_a_cuff_offering_only_the_enhanced_measurement_is_collected_from_its_indications(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """A measurement taken while connected is indicated on 0x2B34 and collected (no 0x2A35 needed)."""
    cuff = await enhanced_cuff(radio, clock)
    device = await BleakScanner.find_device_by_address(cuff.address, backend=radio.scanner_backend)
    assert device is not None
    async with BleakClient(device, backend=radio.client_backend, pair=True) as client:
        collecting = asyncio.create_task(collect_blood_pressure(client, timeouts=QUICK))
        while cuff.measurement_subscribers() == 0:  # bounded by the collector's first-indication wait
            assert not collecting.done(), collecting
            await asyncio.sleep(0.01)
        await cuff.take_measurement(taken_at=clock.now(), systolic_mmhg=141, diastolic_mmhg=92, pulse_bpm=77)
        collection = await collecting
    assert len(collection.measurements) == 1
    (measurement,) = collection.measurements
    assert isinstance(measurement, EnhancedBloodPressureMeasurement)
    assert (measurement.systolic.mantissa, measurement.diastolic.mantissa) == (141, 92)


def segment(
    counter: int, sequence_number: int, value: bytes, *, first: bool, last: bool
) -> BloodPressureRecord:
    return BloodPressureRecord(first, last, counter, sequence_number, 0x2B34, value)


def test_segments_join_in_counter_order_and_a_gap_is_refused() -> None:
    """Segments of one record are joined; a missing segment drops the record instead of gluing others."""
    assembler = RecordAssembler()
    assert assembler.add(segment(62, 7, b"ab", first=True, last=False)) is None
    assert assembler.add(segment(63, 7, b"cd", first=False, last=False)) is None
    joined = assembler.add(segment(0, 7, b"ef", first=False, last=True))  # the counter wraps at 64
    assert joined is not None and joined[1] == b"abcdef"
    assembler.add(segment(1, 8, b"ab", first=True, last=False))
    with pytest.raises(DecodeError):
        assembler.add(segment(3, 8, b"ef", first=False, last=True))
    with pytest.raises(DecodeError):
        assembler.add(segment(4, 9, b"xx", first=False, last=True))
