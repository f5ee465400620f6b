"""Stopping the gateway ends it, whatever its parts were doing at that moment.

A stop cancels the gateway's tasks; a task that loses its cancellation keeps the gateway from ever
stopping (it cannot report itself offline nor close its outbox, and systemd has to kill it). On
Python 3.11, ``asyncio.wait_for`` loses a cancellation that arrives while the call it waits on
completes (CPython gh-86296): an ack waking the forwarder at the moment of a stop is enough. These
tests put the cancellation at each event-loop turn around such a wake-up, so every place in the
window is tried, deterministically.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak import BleakClient

from device_drivers.virtual.backend import VirtualBleakClient, VirtualBleakScanner
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.app import Gateway, GatewayOptions
from gateway.bindings import Bindings, MeterProfile
from gateway.collect import default_collector
from gateway.health import GatewayHealth
from gateway.meters import BleConfig, MeterManager, MeterSession
from gateway.outbox import CommitResult, Outbox, SyncPosition
from gateway.pairing import pair
from gateway.uplink import Forwarder, ForwarderConfig, MqttUplink, UplinkConfig
from tests.gateway.helpers import wait_until

GW = "gw-stopping"
#: Event-loop turns between the wake-up and the stop that the tests try, from "same turn" on; the
#: window in which Python 3.11's wait_for drops a cancellation lies within the first few.
TURNS = range(6)
#: Far more than a stop takes when every task sees its cancellation; a lost one never ends.
STOP_BOUND_S = 5.0


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


def unused_port() -> int:
    """A loopback port nobody listens on: the uplink stays offline, as when the broker is away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def loop_turns(count: int) -> None:
    """Let the event loop run ``count`` times (placing a step at an exact turn, not a wait)."""
    for _ in range(count):
        await asyncio.sleep(0)


def uplink_config() -> UplinkConfig:
    return UplinkConfig(gateway_id=GW, host="127.0.0.1", port=unused_port(), allow_plain_mqtt=True)


async def test_a_forwarder_stopped_as_an_ack_wakes_it_stops(tmp_path: Path) -> None:
    """A forwarder cancelled as it is woken (an ack, a commit) ends instead of forwarding forever."""
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    try:
        for turns in TURNS:
            uplink = MqttUplink(uplink_config())  # not started: the forwarder idles until woken
            forwarder = Forwarder(GW, outbox, uplink, ForwarderConfig(idle_poll_s=60))
            task = asyncio.create_task(forwarder.run())
            await loop_turns(3)  # the forwarder is idle, waiting to be woken
            forwarder.wake()
            await loop_turns(turns)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=STOP_BOUND_S)
            if not done:
                task.cancel()  # a second cancellation ends it, so the test leaves nothing running
                await asyncio.wait([task], timeout=STOP_BOUND_S)
            assert done, f"the forwarder kept running when cancelled {turns} turns after a wake-up"
            assert task.cancelled()
    finally:
        outbox.close()


@pytest.mark.parametrize("turns", TURNS)
async def test_the_gateway_stops_when_a_stop_meets_a_wake_up(
    tmp_path: Path, radio: VirtualRadio, turns: int
) -> None:
    """A stop that coincides with an ack or a status refresh still ends the gateway, reported offline."""
    options = GatewayOptions(
        gateway_id=GW,
        state_dir=tmp_path / "state",
        uplink=uplink_config(),
        status_interval_s=60,
        forwarder=ForwarderConfig(idle_poll_s=60),
    )
    gateway = Gateway(
        options,
        default_collector(dt.UTC),
        scanner_backend=radio.scanner_backend,
        client_backend=radio.client_backend,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await wait_until(options.status_path.exists, 10, "the first status report")
    await wait_until(lambda: gateway.forwarder is not None, 10, "the forwarder")
    assert gateway.forwarder is not None
    stop.set()
    await loop_turns(turns)
    gateway.forwarder.wake()  # what an ack does
    gateway._status_now.set()  # what a reconnect or a full outbox does
    done, _ = await asyncio.wait([task], timeout=STOP_BOUND_S)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=STOP_BOUND_S)
    assert done, f"the gateway did not stop when woken {turns} turns after the stop"
    assert '"online": false' in options.status_path.read_text()


async def test_the_meter_manager_stops_as_scanning_starts(tmp_path: Path, radio: VirtualRadio) -> None:
    """Stopping while the scanner is being (re)started ends the scanning and every meter task."""
    scanner_started = asyncio.Event()
    release = asyncio.Event()

    class ScannerAnsweringLate(VirtualBleakScanner):
        """The radio's scanner, whose start returns only once the test lets it (the race point)."""

        _central = radio.central

        async def start(self) -> None:
            await super().start()
            scanner_started.set()
            await release.wait()

    async def commit(*_args: object) -> CommitResult:
        raise AssertionError("no meter is paired: nothing is committed")

    async def no_position(_meter_key: str) -> SyncPosition | None:
        return None

    for turns in TURNS:
        scanner_started.clear()
        release.clear()
        manager = MeterManager(
            BleConfig(),
            Bindings(tmp_path / "bindings.json", GW).load(),
            GatewayHealth(GW),
            default_collector(dt.UTC),
            commit,
            no_position,
            scanner_backend=ScannerAnsweringLate,
            client_backend=radio.client_backend,
        )
        task = asyncio.create_task(manager.run())
        await asyncio.wait_for(scanner_started.wait(), 10)
        release.set()
        await loop_turns(turns)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=STOP_BOUND_S)
        if not done:
            task.cancel()
            await asyncio.wait([task], timeout=STOP_BOUND_S)
        assert done, f"scanning went on when stopped {turns} turns after the scanner started"


async def test_a_meter_task_stopped_as_its_sync_ends_stops(
    tmp_path: Path, radio: VirtualRadio, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping as a meter's sync ends leaves no meter task behind to reconnect after the stop."""
    session_ending = asyncio.Event()
    release = asyncio.Event()
    turns_before_stop = 0

    class LinkClosingOnCue(VirtualBleakClient):
        """The radio's client; its disconnect returns once the test lets the session end."""

        _central = radio.central

        async def disconnect(self) -> None:
            await super().disconnect()
            session_ending.set()
            await release.wait()

    class ScannerEndingTheSync(VirtualBleakScanner):
        """The radio's scanner; stopping it lets the session end, ``turns_before_stop`` turns before
        the stop reaches the meter tasks (the manager stops them once scanning has stopped)."""

        _central = radio.central

        async def stop(self) -> None:
            await super().stop()
            release.set()
            await loop_turns(turns_before_stop)

    async def read_nothing(_client: BleakClient, _session: MeterSession) -> None:
        """A sync that ends at once: what is under test is the end of the session."""

    async def no_position(_meter_key: str) -> SyncPosition | None:
        return None

    async def commit(*_args: object) -> CommitResult:
        raise AssertionError("the stand-in collector commits nothing")

    meter = make_meter("contour-like", clock=SimulationClock(), serial_number="GL-STOP-1")
    assert isinstance(meter, VirtualGlucoseMeter)
    meter.add_record(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=104)  # it advertises once it holds one
    await radio.add_meter(meter)
    bindings = Bindings(tmp_path / "bindings.json", GW).load()
    await pair(bindings, meter.address, profile=MeterProfile.GLUCOSE, patient_id="patient-1",
               client_backend=radio.client_backend)  # fmt: skip
    for turns in TURNS:
        turns_before_stop = turns
        session_ending.clear()
        release.clear()
        manager = MeterManager(
            BleConfig(disconnect_timeout_s=0.5, resync_after_s=3600),
            bindings,
            GatewayHealth(GW),
            read_nothing,
            commit,
            no_position,
            scanner_backend=ScannerEndingTheSync,
            client_backend=LinkClosingOnCue,
        )
        task = asyncio.create_task(manager.run())
        await asyncio.wait_for(session_ending.wait(), 30)
        task.cancel()
        await asyncio.wait([task], timeout=STOP_BOUND_S)
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("meter-") and not t.done()]
        for leftover in left:  # a second cancellation ends it, so the test leaves nothing running
            leftover.cancel()
        if left:
            await asyncio.wait(left, timeout=STOP_BOUND_S)
        assert task.done(), f"the meter manager kept running when stopped {turns} turns after a sync"
        assert not left, f"a meter task outlived the stop that met its sync's end {turns} turns later"
        assert "meter session did not stop; leaving it" not in caplog.messages
