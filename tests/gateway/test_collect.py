"""The default collector (gateway.collect) against virtual meters over the virtual radio, committing
into a real outbox: what reaches the outbox, how often, and with which time."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import Bindings, MeterProfile, PairedMeter, time_trusted
from gateway.collect import default_collector
from gateway.health import GatewayHealth
from gateway.meters import MeterSession
from gateway.outbox import CommitResult, Outbox, SyncPosition, UnboundReading
from gateway.pairing import pair
from vitals.readings import BloodPressureReading, GlucoseReading, Reading

GW = "gw-collect"


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


class CountingOutbox:
    """A real outbox as the session's sink, counting every reading handed to it (repeats included)."""

    def __init__(self, path: Path) -> None:
        self.outbox = Outbox(path).open()
        self.handed_over = 0
        self.commits = 0
        self.readings: list[Reading] = []

    async def commit(
        self, meter: PairedMeter, readings: Sequence[Reading], position: SyncPosition | None
    ) -> CommitResult:
        self.handed_over += len(readings)
        self.readings.extend(readings)
        self.commits += 1
        unbound = [
            UnboundReading(r, r.device.meter_key, r.user_id if isinstance(r, BloodPressureReading) else None)
            for r in readings
        ]
        return await asyncio.to_thread(self.outbox.commit, [], unbound=unbound, sync_position=position)


def last_sequence_number(sink: CountingOutbox, paired: PairedMeter) -> int | None:
    position = sink.outbox.sync_position(paired.meter_key)
    return None if position is None else position.last_sequence_number


async def pair_cuff(
    tmp_path: Path,
    radio: VirtualRadio,
    meter: VirtualMeter,
    profile: MeterProfile = MeterProfile.BLOOD_PRESSURE,
) -> PairedMeter:
    bindings = Bindings(tmp_path / "bindings.json", GW).load()
    return await pair(
        bindings,
        meter.address,
        profile=profile,
        patient_id="p-1",
        client_backend=radio.client_backend,
    )


async def collect_once(
    tmp_path: Path,
    radio: VirtualRadio,
    meter: VirtualMeter,
    sink: CountingOutbox,
    paired: PairedMeter | None = None,
) -> MeterSession:
    """Connect once (pairing first unless ``paired``) and run the default collector as the gateway does,
    from the sync position the outbox holds, with the user slots the bindings file binds."""
    paired = paired or await pair_cuff(tmp_path, radio, meter)
    device = await BleakScanner.find_device_by_address(meter.address, backend=radio.scanner_backend)
    assert device is not None
    disconnected = asyncio.Event()
    since = sink.outbox.sync_position(paired.meter_key)
    bound_users = Bindings(tmp_path / "bindings.json", GW).load().bound_user_slots(paired.meter_key)
    session = MeterSession(paired, since, sink.commit, GatewayHealth(GW), disconnected, bound_users)
    async with BleakClient(
        device, backend=radio.client_backend, disconnected_callback=lambda _c: disconnected.set()
    ) as client:
        await default_collector(dt.UTC)(client, session)
    return session


async def test_each_cuff_indication_is_committed_once(tmp_path: Path, radio: VirtualRadio) -> None:
    """Every measurement a cuff indicates is handed to the outbox exactly once, none as a duplicate."""
    cuff = make_meter("silvercrest-like", clock=SimulationClock(), serial_number="BP-ONCE")
    assert isinstance(cuff, VirtualBloodPressureCuff)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    for i in range(12):
        cuff.add_record(
            taken_at=start + dt.timedelta(hours=i), systolic_mmhg=120 + i, diastolic_mmhg=80, pulse_bpm=70
        )
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    session = await collect_once(tmp_path, radio, cuff, sink)
    assert sink.outbox.stats().unbound == 12
    assert sink.handed_over == 12
    assert (session.committed, session.duplicates) == (12, 0)


async def test_a_bls_1_1_cuff_with_only_enhanced_measurements_syncs_its_stored_records_by_cursor(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A cuff offering only Enhanced BPM and BP Records over RACP: every stored record of each user
    reaches the outbox once, reassembled from its segments, and the next sync fetches only new ones."""
    cuff = make_meter("bls11-like", clock=SimulationClock(), serial_number="BP-BLS11")
    assert isinstance(cuff, VirtualEnhancedBloodPressureCuff)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
    for i in range(5):
        cuff.add_record(
            taken_at=start + dt.timedelta(hours=i), systolic_mmhg=130 + i, diastolic_mmhg=85, pulse_bpm=66,
            user_id=1 + i % 2,
        )  # fmt: skip
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    await collect_once(tmp_path, radio, cuff, sink, paired)
    assert cuff.segments_sent >= 2 * 5  # every record came in several segments
    assert sink.outbox.unbound_summary() == {(paired.meter_key, 1): 3, (paired.meter_key, 2): 2}
    assert last_sequence_number(sink, paired) == 4
    first = [r for r in sink.readings if isinstance(r, BloodPressureReading)]
    assert [(r.systolic, r.user_id) for r in first] == [(130 + i, 1 + i % 2) for i in range(5)]
    # Corrected by the clock read at sync (whole seconds on the cuff's side).
    errors_s = [
        abs((r.measured_at - (start + dt.timedelta(hours=i))).total_seconds()) for i, r in enumerate(first)
    ]
    assert max(errors_s) < 2

    for i in range(5, 7):
        cuff.add_record(
            taken_at=start + dt.timedelta(hours=i), systolic_mmhg=130 + i, diastolic_mmhg=85, pulse_bpm=66
        )
    session = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert sink.handed_over == 7
    assert (session.committed, session.duplicates) == (2, 0)
    assert last_sequence_number(sink, paired) == 6


async def test_readings_stamped_before_a_meter_clock_reset_are_held_untrusted_not_shifted(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A battery change resets the meter's clock to 2000 between records: the records after it are
    corrected by the clock read at sync; those before keep the time they were stamped with and are
    marked untrusted (no clock offset), instead of being moved 26 years by the new clock's offset."""
    meter = make_meter("contour-like", clock=SimulationClock(), serial_number="GL-RESET")
    assert isinstance(meter, VirtualGlucoseMeter)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    before = [now - dt.timedelta(hours=h) for h in (10, 9, 8)]
    after = [now - dt.timedelta(hours=h) for h in (4, 3)]
    for at in before:
        meter.add_record(taken_at=at, glucose_mg_dl=100)
    # The batteries are changed five hours ago: the clock restarts at 2000-01-01 00:00.
    meter.clock.drift = dt.datetime(2000, 1, 1) - (now - dt.timedelta(hours=5)).replace(tzinfo=None)
    for at in after:
        meter.add_record(taken_at=at, glucose_mg_dl=140)
    await radio.add_meter(meter)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, meter, MeterProfile.GLUCOSE)
    await collect_once(tmp_path, radio, meter, sink, paired)
    readings = sorted(
        (r for r in sink.readings if isinstance(r, GlucoseReading)), key=lambda r: r.sequence_number
    )
    assert len(readings) == 5
    for reading, at in zip(readings[:3], before, strict=True):
        assert reading.clock_offset_s is None and not time_trusted(reading)
        assert reading.measured_at == at  # as stamped: the clock was right until the reset
    for reading, at in zip(readings[3:], after, strict=True):
        assert reading.clock_offset_s is not None and time_trusted(reading)
        assert abs((reading.measured_at - at).total_seconds()) < 2


async def test_a_stored_record_that_cannot_be_decoded_is_asked_for_again_not_skipped(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A BLS 1.1 record the gateway cannot decode keeps the cursor below it: the records around it are
    committed, and the next sync asks for it again, so it is read once the cuff sends it whole."""
    cuff = make_meter("bls11-like", clock=SimulationClock(), serial_number="BP-GARBLED")
    assert isinstance(cuff, VirtualEnhancedBloodPressureCuff)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    for i in range(5):
        cuff.add_record(
            taken_at=start + dt.timedelta(hours=i), systolic_mmhg=130 + i, diastolic_mmhg=85, pulse_bpm=66
        )
    cuff.garbled = {2}
    await radio.add_meter(cuff)
    sink = CountingOutbox(tmp_path / "outbox.db")
    paired = await pair_cuff(tmp_path, radio, cuff)
    await collect_once(tmp_path, radio, cuff, sink, paired)
    assert last_sequence_number(sink, paired) == 1  # below the record it could not read
    assert sorted(r.systolic or 0.0 for r in sink.readings if isinstance(r, BloodPressureReading)) == [
        130,
        131,
        133,
        134,
    ]
    cuff.garbled = set()
    session = await collect_once(tmp_path, radio, cuff, sink, paired)
    assert (session.committed, session.duplicates) == (1, 2)  # record 2 at last; 3 and 4 again
    assert last_sequence_number(sink, paired) == 4
