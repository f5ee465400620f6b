"""A stop that arrives as the Bluetooth adapter answers a command still stops the gateway's radio work.

bumble waits for each HCI command's answer with ``asyncio.wait_for`` (bumble/host.py
``Host._send_command``, under ``Device.command_timeout``), which on Python 3.11 drops a cancellation
that arrives in the loop turn the answer completes the wait (CPython gh-86296). A gateway stopped at
that turn while it (re)started or stopped scanning went on scanning for ever: the stop of
``MeterManager.run`` was lost, and whoever awaited it (the gateway's shutdown, a test) waited for
good on an idle loop. These tests deliver the stop in exactly that turn: the adapter's answer is
handed to the host's stack, then the stop is requested, before the waiting task runs again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bumble import hci

from device_drivers.virtual.radio import VirtualRadio
from gateway.bindings import MeterProfile
from gateway.meters import MeterSession
from gateway.pairing import pair
from tests.gateway.helpers import wait_until
from tests.gateway.test_meters_virtual import Rig, add_with_record, contour

#: Far more than a stop takes when it is seen; a lost stop never ends (the guard turns it into a failure).
STOP_BOUND_S = 10.0

SCAN_ENABLE_OPCODES = {
    hci.HCI_LE_Set_Scan_Enable_Command.op_code,
    hci.HCI_LE_Set_Extended_Scan_Enable_Command.op_code,
}
CREATE_CONNECTION_OPCODES = {
    hci.HCI_LE_Create_Connection_Command.op_code,
    hci.HCI_LE_Extended_Create_Connection_Command.op_code,
}

CommandFilter = Callable[[hci.HCI_Command], bool]


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


def scan_enable(enabled: bool) -> CommandFilter:
    def matches(command: hci.HCI_Command) -> bool:
        if command.op_code not in SCAN_ENABLE_OPCODES:
            return False
        value = getattr(command, "enable", getattr(command, "le_scan_enable", None))
        return bool(value) == enabled

    return matches


def create_connection(command: hci.HCI_Command) -> bool:
    return command.op_code in CREATE_CONNECTION_OPCODES


def stop_when(
    radio: VirtualRadio,
    moment: Literal["sent", "answered"],
    matches: CommandFilter,
    stop: Callable[[], object],
) -> Callable[[], None]:
    """Call ``stop`` in the loop turn the central's stack sends the first command ``matches`` accepts
    (before the adapter answers), or takes the adapter's answer to it; returns what undoes this."""
    host = radio.central.device.host
    name = "send_hci_packet" if moment == "sent" else "on_command_processed"
    original = getattr(host, name)
    armed = True

    def then_stop(packet: hci.HCI_Packet) -> None:
        nonlocal armed
        command = packet if moment == "sent" else host.pending_command
        original(packet)
        if armed and isinstance(command, hci.HCI_Command) and matches(command):
            armed = False
            stop()

    setattr(host, name, then_stop)
    return lambda: delattr(host, name)


async def stopped_within_bound(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` ended after its stop; a task still running is cancelled again, so the test
    leaves nothing running."""
    done, _ = await asyncio.wait([task], timeout=STOP_BOUND_S)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=STOP_BOUND_S)
    return bool(done)


async def run_and_stop_when(
    rig: Rig, radio: VirtualRadio, moment: Literal["sent", "answered"], matches: CommandFilter
) -> asyncio.Task[None]:
    """Run the rig's meter manager and stop it at ``moment`` of the first command ``matches``
    accepts; returns its task once ended, and fails the test if the stop was lost."""
    task = asyncio.create_task(rig.manager.run())
    undo = stop_when(radio, moment, matches, task.cancel)
    try:
        ended = await stopped_within_bound(task)
    finally:
        undo()
    assert ended, "the meter manager kept scanning after its stop"
    return task


@pytest.mark.parametrize("enabled", [True, False], ids=["scan-start", "scan-stop"])
async def test_the_gateway_stops_when_the_stop_meets_the_adapters_answer_to_a_scan_command(
    tmp_path: Path, radio: VirtualRadio, enabled: bool
) -> None:
    """Stopping the gateway as the adapter confirms that scanning started (or, at a watchdog restart,
    stopped) ends the scanning instead of leaving it running and the stop waiting for ever."""
    rig = Rig(tmp_path, radio)  # no meter on the air: the watchdog restarts scanning every second
    task = await run_and_stop_when(rig, radio, "answered", scan_enable(enabled))
    assert task.cancelled()
    assert not radio.central.device.is_scanning, "the radio was left scanning after the stop"


async def test_a_meter_session_stopped_as_the_adapter_accepts_the_connection_request_does_not_sync(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A meter task stopped as the adapter accepts its connection request ends without syncing the
    meter and leaves no link open (the meter advertises again for whoever comes next)."""
    meter = await add_with_record(radio, contour("GL-HANG-1"))  # it advertises once it holds a record
    synced: list[str] = []

    async def note_sync(_client: BleakClient, session: MeterSession) -> None:
        synced.append(session.meter.meter_key)

    rig = Rig(tmp_path, radio, collector=note_sync, disconnect_timeout_s=2.0)
    await pair(rig.bindings, meter.address, profile=MeterProfile.GLUCOSE, patient_id="patient-1",
               client_backend=radio.client_backend)  # fmt: skip
    stopped: list[asyncio.Task[Any]] = []
    stop_sent = asyncio.Event()

    def stop_the_meter_task() -> None:  # what the manager's own stop does to each meter task
        for task in asyncio.all_tasks():
            if task.get_name() == f"meter-{meter.address}":
                task.cancel()
                stopped.append(task)
        stop_sent.set()

    undo = stop_when(radio, "answered", create_connection, stop_the_meter_task)
    run = asyncio.create_task(rig.manager.run())
    try:
        async with asyncio.timeout(30):
            await stop_sent.wait()
        ended = await stopped_within_bound(stopped[0])
    finally:
        undo()
        run.cancel()
        await asyncio.wait([run], timeout=STOP_BOUND_S)
    assert ended, "the meter task went on after its stop"
    assert synced == [], "the meter was synced after the gateway stopped its task"
    await wait_until(
        lambda: not meter.device or not meter.device.connections, STOP_BOUND_S, "the link released"
    )


async def test_a_gateway_stopped_while_its_scan_starts_hears_no_meter_afterwards(
    tmp_path: Path, radio: VirtualRadio
) -> None:
    """A stop that lands while the adapter is still starting the scan leaves nothing listening: the
    stopped gateway hears no advertisement and starts no session, while the meter goes on advertising."""
    meter = await add_with_record(radio, contour("GL-HANG-2"))
    rig = Rig(tmp_path, radio)
    await pair(rig.bindings, meter.address, profile=MeterProfile.GLUCOSE, patient_id="patient-1",
               client_backend=radio.client_backend)  # fmt: skip
    await run_and_stop_when(rig, radio, "sent", scan_enable(True))
    heard_after_stop = rig.manager.last_advertisement_at
    witnessed = 0
    enough = asyncio.Event()

    def witness(_device: BLEDevice, _advertisement: AdvertisementData) -> None:
        nonlocal witnessed
        witnessed += 1
        if witnessed >= 3:
            enough.set()

    scanner = BleakScanner(witness, backend=radio.scanner_backend)
    await scanner.start()
    try:
        async with asyncio.timeout(STOP_BOUND_S):
            await enough.wait()  # the meter's advertisements reach whoever listens
    finally:
        await scanner.stop()
    assert rig.manager.last_advertisement_at == heard_after_stop, "the stopped gateway still heard the meter"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("meter-")], (
        "a session began after the stop"
    )
