"""Scanning, pairing and connections through bleak against the virtual meters (device_drivers.virtual).

The collector here is a stand-in for the device_drivers procedures: it reads the meter's identity and
battery over GATT and commits readings for that identity, so what is under test is the gateway side:
discovery, bindings, the per-meter tasks, the connection cap and the refusal of a device that claims
a paired meter's identity without the bond.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient

from device_drivers.profiles.uuids import BATTERY_LEVEL
from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import Bindings, MeterProfile, PairedMeter
from gateway.collect import default_collector
from gateway.health import GatewayHealth
from gateway.meters import BleConfig, MeterManager, MeterSession
from gateway.outbox import CommitResult, Outbox, SyncPosition, UnboundReading
from gateway.pairing import PairingError, discover, pair, read_identity
from testbed.factories import glucose
from tests.gateway.helpers import wait_until
from vitals.readings import Reading

GW = "gw-virtual"
Collector = Callable[[BleakClient, MeterSession], Awaitable[None]]


async def stand_in_collector(client: BleakClient, session: MeterSession) -> None:
    identity = await read_identity(client, session.meter.address)
    battery = await client.read_gatt_char(BATTERY_LEVEL)
    session.report_battery(battery[0])
    start = (session.since_sequence_number or 0) + 1
    readings = [glucose(n, device=identity, patient_id=None) for n in range(start, start + 3)]
    await session.commit(readings, last_sequence_number=start + 2)


STUCK_REPORT_AFTER_S = 240.0  # before pytest-timeout's 300 s ends the test


def report_stuck_tasks() -> None:
    """Print where every task of the test's loop waits, so a test stuck with an idle loop (a cancelled
    scan loop that does not end) shows what it waits for before it is ended."""
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()} (cancelling={task.cancelling()}) waits in:", file=sys.stderr)
        awaited: Any = task.get_coro()
        while awaited is not None:  # down the chain of awaits to the innermost one
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                print(f"    on {awaited!r}", file=sys.stderr)
                break
            print(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}", file=sys.stderr)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    # Armed for the test, its radio's close and the loop's own teardown; dies with the loop.
    asyncio.get_running_loop().call_later(STUCK_REPORT_AFTER_S, report_stuck_tasks)
    async with VirtualRadio() as radio:
        yield radio


def contour(serial: str, address: str | None = None) -> VirtualMeter:
    meter = make_meter("contour-like", clock=SimulationClock(), serial_number=serial, address=address)
    return meter


async def add_with_record(radio: VirtualRadio, meter: VirtualMeter) -> VirtualMeter:
    meter.add_record(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=104)  # type: ignore[attr-defined]
    return await radio.add_meter(meter)


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        radio: VirtualRadio,
        *,
        max_connections: int = 3,
        collector: Collector = stand_in_collector,
        disconnect_timeout_s: float = 10.0,
    ) -> None:
        self.outbox = Outbox(tmp_path / "outbox.db").open()
        self.bindings = Bindings(tmp_path / "bindings.json", GW).load()
        self.health = GatewayHealth(GW)
        self.manager = MeterManager(
            BleConfig(
                max_concurrent_connections=max_connections,
                scanner_watchdog_s=1.0,
                watchdog_check_s=0.2,
                resync_after_s=3600,
                connect_timeout_s=10,
                disconnect_timeout_s=disconnect_timeout_s,
            ),
            self.bindings,
            self.health,
            collector,
            self.commit,
            self.sync_position,
            scanner_backend=radio.scanner_backend,
            client_backend=radio.client_backend,
        )

    async def commit(
        self, meter: PairedMeter, readings: Sequence[Reading], position: SyncPosition | None
    ) -> CommitResult:
        unbound = [UnboundReading(r, r.device.meter_key, None) for r in readings]
        return await asyncio.to_thread(self.outbox.commit, [], unbound=unbound, sync_position=position)

    async def sync_position(self, meter_key: str) -> SyncPosition | None:
        return self.outbox.sync_position(meter_key)


async def test_pair_then_sync_every_paired_meter_within_the_connection_cap(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    meters = [await add_with_record(radio, contour(f"GL-{i}")) for i in range(4)]
    stranger = await add_with_record(radio, contour("GL-STRANGER"))
    rig = Rig(tmp_path, radio, max_connections=2)
    candidates = await discover(rig.bindings, duration_s=1.0, scanner_backend=radio.scanner_backend)
    assert {m.address for m in [*meters, stranger]} <= {c.address for c in candidates}
    for i, meter in enumerate(meters):
        paired = await pair(
            rig.bindings,
            meter.address,
            profile=MeterProfile.GLUCOSE,
            patient_id=f"patient-{i}",
            client_backend=radio.client_backend,
        )
        assert paired.meter_key.endswith(f"GL-{i}")
        assert rig.bindings.patient_for(paired.meter_key, None) == f"patient-{i}"
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(lambda: rig.manager.sessions_ok >= 4, 60, "four meters synced")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rig.manager.max_active_connections <= 2
    assert stranger.address in rig.manager.ignored_devices  # never connected: not paired here
    for meter in meters:
        key = rig.bindings.meter_at(meter.address).meter_key  # type: ignore[union-attr]
        assert rig.outbox.sync_position(key) == SyncPosition(key, 3)
        assert rig.health.meters[key].battery_percent == meter.battery_level_percent
        assert rig.health.meters[key].last_sync_at is not None


async def test_a_device_at_a_paired_address_without_the_bond_is_refused_and_logged(
    tmp_path: Path, radio: VirtualRadio, caplog: pytest.LogCaptureFixture
) -> None:
    genuine = await add_with_record(radio, contour("GL-REAL", address="C4:11:22:33:44:55"))
    rig = Rig(tmp_path, radio)
    await pair(
        rig.bindings,
        genuine.address,
        profile=MeterProfile.GLUCOSE,
        patient_id="p-1",
        client_backend=radio.client_backend,
    )
    await genuine.stop()
    # An impostor takes the meter's address and identity, but it holds no bond with the gateway.
    impostor = contour("GL-REAL", address="C4:11:22:33:44:55")
    impostor.attach(radio.link)  # type: ignore[arg-type]
    impostor.add_record(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=300)  # type: ignore[attr-defined]
    await impostor.start()
    task = asyncio.create_task(rig.manager.run())
    try:
        key = rig.bindings.meter_at(genuine.address).meter_key  # type: ignore[union-attr]
        await wait_until(
            lambda: key in rig.health.meters and rig.health.meters[key].failures >= 1, 30, "refusal"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await impostor.stop()
    assert rig.outbox.stats().unbound == 0 and rig.outbox.stats().depth == 0
    assert rig.health.meters[key].last_error is not None
    assert rig.health.meters[key].last_error.startswith("spoofed")  # type: ignore[union-attr]
    assert any(r.levelname == "ERROR" and getattr(r, "error_kind", "") == "spoofed" for r in caplog.records)


async def test_pairing_a_second_device_with_a_paired_identity_is_refused(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    genuine = await add_with_record(radio, contour("GL-TWIN"))
    twin = await add_with_record(radio, contour("GL-TWIN"))
    bindings = Bindings(tmp_path / "b.json", GW).load()
    await pair(
        bindings,
        genuine.address,
        profile=MeterProfile.GLUCOSE,
        patient_id="p-1",
        client_backend=radio.client_backend,
    )
    with pytest.raises(PairingError, match="another address"):
        await pair(
            bindings,
            twin.address,
            profile=MeterProfile.GLUCOSE,
            patient_id="p-2",
            client_backend=radio.client_backend,
        )
    assert bindings.meter_at(twin.address) is None


async def test_scanner_watchdog_restarts_scanning_after_silence(tmp_path: Path, radio: VirtualRadio) -> None:
    """A scanner that has heard nothing for the watchdog's time is restarted, again and again."""
    rig = Rig(tmp_path, radio)
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(lambda: rig.manager.scanner_restarts >= 2, 10, "scanner restarts")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_stopping_does_not_wait_forever_for_a_session_the_radio_never_ends(
    tmp_path: Path, radio: VirtualRadio, caplog: pytest.LogCaptureFixture
) -> None:
    """A radio stack that never answers (a connect cancelled mid-way, a link whose peer is gone)
    can leave a meter session deaf to cancellation. Stopping the gateway must still end, within
    the disconnect timeout, so it can close its outbox and report itself offline."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def unanswered(client: BleakClient, session: MeterSession) -> None:
        entered.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # cancellation does not end it
                await release.wait()

    meter = await add_with_record(radio, contour("GL-STUCK"))
    rig = Rig(tmp_path, radio, collector=unanswered, disconnect_timeout_s=0.5)
    await pair(rig.bindings, meter.address, profile=MeterProfile.GLUCOSE, patient_id="patient-1",
               client_backend=radio.client_backend)  # fmt: skip
    task = asyncio.create_task(rig.manager.run())
    await asyncio.wait_for(entered.wait(), 30)
    started = asyncio.get_running_loop().time()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert asyncio.get_running_loop().time() - started < 5.0
    assert "meter session did not stop; leaving it" in caplog.messages
    release.set()  # let the stuck session go, so the test leaves nothing running
    await asyncio.sleep(0.1)


async def test_a_session_that_ignored_the_stop_ends_its_meter_task_when_it_returns(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A session that outlived the stop (its stack dropped the cancellation) does not lead to
    another sync once it returns: the meter task ends, with the gateway already stopped."""
    entered, release = asyncio.Event(), asyncio.Event()
    sessions = 0

    async def deaf_to_the_stop(client: BleakClient, session: MeterSession) -> None:
        nonlocal sessions
        sessions += 1
        entered.set()
        try:
            await release.wait()
        except asyncio.CancelledError:  # the stop is dropped here; the stack answers later
            await release.wait()

    meter = await add_with_record(radio, contour("GL-DEAF"))
    rig = Rig(tmp_path, radio, collector=deaf_to_the_stop, disconnect_timeout_s=0.5)
    rig.manager.config = dataclasses.replace(rig.manager.config, resync_after_s=0.0)
    await pair(rig.bindings, meter.address, profile=MeterProfile.GLUCOSE, patient_id="patient-1",
               client_backend=radio.client_backend)  # fmt: skip
    task = asyncio.create_task(rig.manager.run())
    await asyncio.wait_for(entered.wait(), 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # returns once the manager gives up waiting
    meter_tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"meter-{meter.address}"]
    assert meter_tasks, "the session is still running, as the stack made it"
    release.set()  # the session returns, as a late answer from the stack would make it
    done, _ = await asyncio.wait(meter_tasks, timeout=10)
    for leftover in meter_tasks:
        leftover.cancel()  # a second cancellation, so the test leaves nothing running
    assert done == set(meter_tasks), "the meter task went on after the stop"
    assert sessions == 1


async def test_a_cuff_ending_the_link_at_its_last_indication_has_every_reading_committed(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A cuff that drops the link the moment its last indication is confirmed loses no reading."""
    clock = SimulationClock(speed=1_000_000.0)  # the cuff's linger after its last indication: µs
    cuff = make_meter("silvercrest-like", clock=clock, serial_number="BP-ABRUPT")
    assert isinstance(cuff, VirtualBloodPressureCuff)
    for index in range(20):
        cuff.add_record(
            taken_at=clock.now() - dt.timedelta(hours=20 - index),
            systolic_mmhg=120 + index,
            diastolic_mmhg=80,
            pulse_bpm=70,
        )
    await radio.add_meter(cuff)
    collect = default_collector(dt.UTC, now=clock.now)
    link_ended_by_cuff: list[bool] = []

    async def collect_and_note_who_ended_the_link(client: BleakClient, session: MeterSession) -> None:
        await collect(client, session)
        link_ended_by_cuff.append(session.disconnected.is_set())  # set only when the meter ends it

    rig = Rig(tmp_path, radio, collector=collect_and_note_who_ended_the_link)
    await pair(rig.bindings, cuff.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="patient-1",
               user_id=1, client_backend=radio.client_backend)  # fmt: skip
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(lambda: rig.manager.sessions_ok >= 1, 30, "the cuff synced")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert link_ended_by_cuff == [True]
    assert rig.outbox.stats().unbound == 20


async def test_the_gateway_waits_the_settle_delay_an_a_and_d_cuff_advertises_for(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A cuff advertising as an A&D UA-651BLE is asked nothing over GATT for 2 s after the gateway's
    sessions connect (it would show "E 10" and switch off), and still syncs."""
    clock = SimulationClock()
    cuff = make_meter("and-like", clock=clock, serial_number="AD-SETTLE")
    cuff.add_record(taken_at=clock.now(), systolic_mmhg=128, diastolic_mmhg=82, pulse_bpm=66)  # type: ignore[attr-defined]
    await radio.add_meter(cuff)
    rig = Rig(tmp_path, radio, collector=default_collector(dt.UTC, now=clock.now))
    await pair(rig.bindings, cuff.address, profile=MeterProfile.BLOOD_PRESSURE, patient_id="patient-1",
               user_id=1, client_backend=radio.client_backend)  # fmt: skip
    paired_connections = len(cuff.first_request_after_s)
    task = asyncio.create_task(rig.manager.run())
    try:
        await wait_until(lambda: rig.manager.sessions_ok >= 1, 30, "the cuff synced")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    session_waits = cuff.first_request_after_s[paired_connections:]
    assert session_waits and min(session_waits) >= 2.0
    assert rig.outbox.stats().unbound == 1
