"""A meter that hangs up the moment the link comes up, or an adapter that never confirms a disconnect,
does not leave the gateway's Bluetooth client waiting for good.

bumble announces a disconnection once, to the listeners the connection has at that moment
(bumble/device.py ``Device.on_disconnection``), and the virtual client can register its listener
only once the adapter hands it the new connection, a few loop turns after the link came up. A
client that missed the disconnection would ask the adapter to end a link the adapter no longer
knows, which bumble's controller answers "pending" and never completes (bumble/controller.py
``on_hci_disconnect_command``), while bumble's ``Device.disconnect`` waits for that completion with
no timeout: the cleanup of a failed connect, and with it the gateway's pairing and meter sessions,
would hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from bleak import BleakClient
from bleak.exc import BleakError
from bumble import hci
from bumble.device import Connection

from device_drivers.profiles import uuids
from device_drivers.virtual import backend
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from tests.device_drivers.virtual.test_backend import WAIT_S, find
from tests.gateway.helpers import wait_until

#: Far more than the failed connect and the disconnect take; a client waiting for an event that never
#: comes waits for good, which the guard turns into a failure.
GUARD_S = 15.0
#: An adapter this slow to answer outlasts the guard.
SLOW_ADAPTER_COMMAND_TIMEOUT_S = 60.0

_T = TypeVar("_T")


def meter_hangs_up_as_the_link_opens(radio: VirtualRadio, meter: VirtualMeter) -> Callable[[], None]:
    """Have ``meter`` end each new link, and the adapter hear it end, after the adapter has the
    connection and before it hands it to the client; returns what undoes this."""
    central = radio.central
    original = central.connect

    async def connect_then_hang_up(address: str, *, timeout_s: float) -> Connection:
        connection = await original(address, timeout_s=timeout_s)
        ended = asyncio.Event()
        connection.once(Connection.EVENT_DISCONNECTION, lambda _reason: ended.set())
        assert meter.device is not None
        meter_side = next(iter(meter.device.connections.values()))
        await meter_side.disconnect()  # the meter's own HCI Disconnect, over the virtual air
        await asyncio.wait_for(ended.wait(), WAIT_S)
        return connection

    central.connect = connect_then_hang_up  # type: ignore[method-assign]
    return lambda: delattr(central, "connect")


async def within_guard(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` in a task and return its result. A task still running after the guard is
    cancelled again (a cleanup that absorbed the first cancellation may wait for ever) and fails the
    test."""
    task = asyncio.create_task(work)
    done, _ = await asyncio.wait([task], timeout=GUARD_S)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=GUARD_S)
    assert done, "the client was still waiting after the guard"
    return task.result()


async def connect_then_disconnect(client: BleakClient) -> BaseException | None:
    """Connect and then disconnect ``client``; returns what the connect raised."""
    failure: BaseException | None = None
    try:
        await client.connect()
    except BleakError as error:
        failure = error
    await client.disconnect()
    return failure


async def test_a_connect_to_a_meter_that_hangs_up_at_once_fails_and_its_disconnect_returns(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """Connecting to a meter that hangs up as the link opens fails with a Bluetooth error instead of
    hanging, and a disconnect afterwards returns with the client not connected."""
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="SN-HANGUP"))
    client = BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S)
    undo = meter_hangs_up_as_the_link_opens(radio, meter)
    try:
        failure = await within_guard(connect_then_disconnect(client))
    finally:
        undo()
    assert isinstance(failure, BleakError), "the connect succeeded on a link the meter had ended"
    assert not client.is_connected
    assert not radio.central.device.connections, "the adapter still holds the link"


async def test_the_gateway_connects_to_the_meter_again_after_it_hung_up_at_once(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """After a meter hung up as the link opened, the next connect to it succeeds and reads it."""
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="SN-AGAIN"))
    undo = meter_hangs_up_as_the_link_opens(radio, meter)
    try:
        client = BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S)
        await within_guard(connect_then_disconnect(client))
    finally:
        undo()
    async with asyncio.timeout(GUARD_S):
        device = await find(radio, meter)  # advertising again once the link is gone
        async with BleakClient(device, backend=radio.client_backend, timeout=WAIT_S) as client:
            assert await client.read_gatt_char(uuids.SERIAL_NUMBER_STRING) == b"SN-AGAIN"


async def test_a_disconnect_through_an_adapter_that_does_not_answer_returns_within_its_bound(
    radio: VirtualRadio, clock: SimulationClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disconnect whose request the adapter leaves unanswered returns after the disconnect bound,
    with the client no longer connected, instead of waiting as long as the adapter does."""
    monkeypatch.setattr(backend, "DISCONNECT_TIMEOUT_S", 1.0)
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="SN-SLOW"))
    client = BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S)
    await client.connect()
    host = radio.central.device.host
    radio.central.device.command_timeout = SLOW_ADAPTER_COMMAND_TIMEOUT_S
    held: list[hci.HCI_Packet] = []
    original = host.send_hci_packet

    def hold_disconnects(packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_Disconnect_Command):
            held.append(packet)  # reaches the adapter only once the test releases it
        else:
            original(packet)

    host.send_hci_packet = hold_disconnects  # type: ignore[method-assign]
    try:
        await within_guard(client.disconnect())
    finally:
        del host.send_hci_packet
        for packet in held:
            original(packet)
    assert held, "the disconnect never asked the adapter"
    assert not client.is_connected
    # The held request, answered at last, ends the link.
    await wait_until(lambda: not radio.central.device.connections, GUARD_S, "the link released")
