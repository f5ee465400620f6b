"""The bleak backend over bumble: discovery, GATT, pairing and bonds, as bleak callers see them."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from device_drivers.profiles import uuids
from device_drivers.virtual.backend import VirtualBleakClient
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio

WAIT_S = 10.0
#: Never shown: the meter is created with fixed_passkey=PASSKEY.
PASSKEY = 123456
WRONG_PASSKEY = 654321


async def find(radio: VirtualRadio, meter: VirtualMeter) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        meter.address, timeout=WAIT_S, backend=radio.scanner_backend
    )
    assert device is not None, "meter not discovered"
    return device


async def test_scanner_reports_advertisement_data_and_honours_service_filter(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    glucose = await radio.add_meter(make_meter("contour-like", clock=clock, serial_number="G-1"))
    glucose.add_record(taken_at=clock.now(), glucose_mg_dl=101)  # type: ignore[attr-defined]
    await glucose.update_advertising()
    cuff = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-1"))
    seen: dict[str, AdvertisementData] = {}
    both = asyncio.Event()

    def on_advertisement(device: BLEDevice, data: AdvertisementData) -> None:
        seen[device.address] = data
        if len(seen) == 2:
            both.set()

    async with BleakScanner(on_advertisement, backend=radio.scanner_backend):
        await asyncio.wait_for(both.wait(), WAIT_S)
    assert seen[glucose.address].local_name == "Contour-V"
    assert seen[glucose.address].service_uuids == [uuids.GLUCOSE_SERVICE]
    assert seen[cuff.address].service_uuids == [uuids.BLOOD_PRESSURE_SERVICE]

    only_cuffs = await BleakScanner.find_device_by_filter(
        lambda _device, data: True,
        timeout=WAIT_S,
        service_uuids=[uuids.BLOOD_PRESSURE_SERVICE],
        backend=radio.scanner_backend,
    )
    assert only_cuffs is not None and only_cuffs.address == cuff.address


async def test_client_discovers_gatt_and_reads_device_information(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="SN-0042"))
    async with BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S) as client:
        measurement = client.services.get_characteristic(uuids.BLOOD_PRESSURE_MEASUREMENT)
        assert measurement is not None and measurement.properties == ["indicate"]
        assert client.services.get_service(uuids.DEVICE_INFORMATION_SERVICE) is not None
        assert await client.read_gatt_char(uuids.SERIAL_NUMBER_STRING) == b"SN-0042"
        assert await client.read_gatt_char(uuids.BATTERY_LEVEL) == bytes([87])
        assert client.mtu_size > 23


async def test_unbonded_client_is_refused_by_a_meter_that_requires_bonding(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-2"))
    meter.add_record(taken_at=clock.now(), systolic_mmhg=120, diastolic_mmhg=80, pulse_bpm=70)  # type: ignore[attr-defined]
    async with BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S) as client:
        with pytest.raises(BleakGATTProtocolError) as refused_read:
            await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
        assert refused_read.value.code is BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        received: list[bytearray] = []
        with pytest.raises(BleakGATTProtocolError):
            await client.start_notify(
                uuids.BLOOD_PRESSURE_MEASUREMENT, lambda _c, data: received.append(data)
            )
    assert received == []
    assert await meter.bonded_hosts() == []


async def test_pairing_bonds_and_the_bond_encrypts_the_next_connection(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = await radio.add_meter(make_meter("contour-like", clock=clock, serial_number="G-2"))
    meter.add_record(taken_at=clock.now(), glucose_mg_dl=99)  # type: ignore[attr-defined]
    await meter.update_advertising()
    device = await find(radio, meter)
    async with BleakClient(device, backend=radio.client_backend, pair=True, timeout=WAIT_S) as client:
        assert await client.read_gatt_char(uuids.GLUCOSE_FEATURE)
    assert await meter.bonded_hosts() == [radio.central.address]
    # Second connection: no pairing asked, the stored bond re-encrypts the link.
    async with BleakClient(device.address, backend=radio.client_backend, timeout=WAIT_S) as client:
        assert await client.read_gatt_char(uuids.GLUCOSE_FEATURE)
    # unpair() forgets the bond: protected data is refused again.
    async with BleakClient(device.address, backend=radio.client_backend, timeout=WAIT_S) as client:
        await client.unpair()
    async with BleakClient(device.address, backend=radio.client_backend, timeout=WAIT_S) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.read_gatt_char(uuids.GLUCOSE_FEATURE)


async def test_passkey_meter_pairs_with_the_pin_on_its_display_only(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = await radio.add_meter(
        make_meter("accu-chek-like", clock=clock, serial_number="R-1", fixed_passkey=PASSKEY)
    )
    device = await find(radio, meter)
    async with BleakClient(device, backend=radio.client_backend, timeout=WAIT_S) as client:
        # The user types a wrong PIN: pairing fails, nothing is bonded.
        with pytest.raises(BleakError):
            await client.pair(passkey=WRONG_PASSKEY)
    # The radio's default agent reads the PIN off the meter's display, as the user would.
    async with BleakClient(device, backend=radio.client_backend, pair=True, timeout=WAIT_S) as client:
        assert meter.displayed_passkey == PASSKEY
        assert await client.read_gatt_char(uuids.GLUCOSE_FEATURE)
    assert await meter.bonded_hosts() == [radio.central.address]


async def test_omron_like_cuff_is_silent_until_measured_and_keeps_one_bond(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    cuff = await radio.add_meter(make_meter("omron-like", clock=clock, serial_number="O-1"))
    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient(cuff.address, backend=radio.client_backend, timeout=0.5).connect()

    await cuff.take_measurement(  # type: ignore[attr-defined]
        taken_at=clock.now(), systolic_mmhg=131, diastolic_mmhg=84, pulse_bpm=66
    )
    device = await find(radio, cuff)
    # Outside pairing mode the cuff refuses a new bond.
    async with BleakClient(device, backend=radio.client_backend, timeout=WAIT_S) as client:
        with pytest.raises(BleakError):
            await client.pair()
    await cuff.enter_pairing_mode()
    async with BleakClient(device, backend=radio.client_backend, pair=True, timeout=WAIT_S) as client:
        assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
    assert await cuff.bonded_hosts() == [radio.central.address]

    assert not cuff.pairing_mode  # "-P-" ends once a host has bonded
    # A second gateway pairs in pairing mode: the cuff drops the first bond (one bond, §2.7).
    await cuff.enter_pairing_mode()
    assert radio.link is not None
    async with (
        VirtualRadio(link=radio.link, central_address="C0:FF:EE:00:00:02") as other,
        BleakClient(cuff.address, backend=other.client_backend, pair=True, timeout=WAIT_S) as client,
    ):
        assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
    assert await cuff.bonded_hosts() == ["C0:FF:EE:00:00:02"]
    async with BleakClient(cuff.address, backend=radio.client_backend, timeout=WAIT_S) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)


async def test_disconnected_callback_fires_when_the_meter_ends_the_link(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-3"))
    lost = asyncio.Event()
    client = BleakClient(
        await find(radio, meter), lambda _client: lost.set(), backend=radio.client_backend, timeout=WAIT_S
    )
    await client.connect()
    await meter.drop_links()
    await asyncio.wait_for(lost.wait(), WAIT_S)
    assert not client.is_connected
    with pytest.raises(BleakError):
        await client.read_gatt_char(uuids.BATTERY_LEVEL)


async def test_gateway_reaches_meters_held_by_another_stack_over_tcp(clock: SimulationClock) -> None:
    # The simulator side: a link with a meter, and a controller served on a TCP port.
    async with VirtualRadio() as simulator:
        meter = await simulator.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-4"))
        _transport, port = await simulator.serve_controller_on_free_port()
        # The gateway side: only a host stack, its controller is the served one.
        gateway = await VirtualRadio.remote(f"tcp-client:127.0.0.1:{port}")
        try:
            device = await BleakScanner.find_device_by_address(
                meter.address, timeout=WAIT_S, backend=gateway.scanner_backend
            )
            assert device is not None
            async with BleakClient(
                device, backend=gateway.client_backend, pair=True, timeout=WAIT_S
            ) as client:
                assert await client.read_gatt_char(uuids.SERIAL_NUMBER_STRING) == b"B-4"
                assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
        finally:
            await gateway.close()


async def test_a_gateway_restarted_after_a_kill_reaches_the_meter_its_dead_host_left_linked(
    clock: SimulationClock,
) -> None:
    """kill -9 of a gateway mid-session, then a restart: the meter is found and read again, not kept
    silent by the link the dead host never closed."""
    async with VirtualRadio() as simulator:
        meter = await simulator.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-K"))
        served, port = await simulator.serve_controller_on_free_port()
        spec = f"tcp-client:127.0.0.1:{port}"
        killed = await VirtualRadio.remote(spec)
        client = BleakClient(await find(killed, meter), backend=killed.client_backend, timeout=WAIT_S)
        await client.connect()
        assert killed.central._transport is not None
        await killed.central._transport.close()  # the host stack dies: nothing more reaches the controller
        for _ in range(int(WAIT_S * 100)):  # until the simulator has seen the dead host's socket close
            if served.sink.transport is None:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        restarted = await VirtualRadio.remote(spec)
        try:
            async with BleakClient(
                await find(restarted, meter), backend=restarted.client_backend, timeout=WAIT_S
            ) as again:
                assert await again.read_gatt_char(uuids.SERIAL_NUMBER_STRING) == b"B-K"
        finally:
            await restarted.close()


async def test_current_time_write_sets_the_meter_clock(radio: VirtualRadio, clock: SimulationClock) -> None:
    from device_drivers.profiles.time import CurrentTime, decode_current_time, encode_current_time

    meter = await radio.add_meter(
        make_meter(
            "silvercrest-like", clock=clock, serial_number="B-5", clock_drift=dt.timedelta(minutes=-42)
        )
    )
    async with BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S) as client:
        before = decode_current_time(
            bytes(await client.read_gatt_char(uuids.CURRENT_TIME))
        ).date_time.to_datetime()
        assert before is not None
        true_now = clock.now().replace(tzinfo=None)
        assert abs((before - true_now) - dt.timedelta(minutes=-42)) < dt.timedelta(seconds=5)
        await client.write_gatt_char(
            uuids.CURRENT_TIME, encode_current_time(CurrentTime.from_datetime(true_now)), True
        )
        after = decode_current_time(
            bytes(await client.read_gatt_char(uuids.CURRENT_TIME))
        ).date_time.to_datetime()
        assert after is not None and abs(after - clock.now().replace(tzinfo=None)) < dt.timedelta(seconds=5)


async def test_bonds_kept_in_a_file_survive_a_gateway_restart(clock: SimulationClock, tmp_path: Path) -> None:
    bonds = tmp_path / "bonds.json"
    async with VirtualRadio(keystore_path=bonds) as radio:
        cuff = await radio.add_meter(make_meter("omron-like", clock=clock, serial_number="O-R"))
        await cuff.enter_pairing_mode()
        async with BleakClient(
            cuff.address, backend=radio.client_backend, pair=True, timeout=WAIT_S
        ) as client:
            assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
        await cuff.leave_pairing_mode()
        await cuff.take_measurement(  # type: ignore[attr-defined]
            taken_at=clock.now(), systolic_mmhg=120, diastolic_mmhg=80, pulse_bpm=60
        )
        assert radio.link is not None
        # The gateway restarts: a new central with the same address and bond file, same air.
        await radio.central.close()
        async with (
            VirtualRadio(link=radio.link, keystore_path=bonds) as restarted,
            BleakClient(cuff.address, backend=restarted.client_backend, timeout=WAIT_S) as client,
        ):
            assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)


async def test_a_connect_the_gateway_gives_up_on_leaves_the_radio_free_for_the_next(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """The gateway's own timeout (or its stop) can cancel a connect before bumble's does. The
    controller's attempt must end with it: a pending attempt refuses every later connect and can
    still complete into a link the gateway does not know, which keeps the meter from advertising."""
    cuff = await radio.add_meter(make_meter("omron-like", clock=clock, serial_number="O-9"))
    with pytest.raises(TimeoutError):  # silent until measured: the attempt is still pending
        await asyncio.wait_for(radio.central.connect(cuff.address, timeout_s=30.0), 0.5)
    await cuff.take_measurement(  # type: ignore[attr-defined]
        taken_at=clock.now(), systolic_mmhg=128, diastolic_mmhg=82, pulse_bpm=64
    )
    await cuff.enter_pairing_mode()
    device = await find(radio, cuff)
    async with BleakClient(device, backend=radio.client_backend, pair=True, timeout=WAIT_S) as client:
        assert await client.read_gatt_char(uuids.BLOOD_PRESSURE_FEATURE)
    assert await cuff.bonded_hosts() == [radio.central.address]


async def test_meters_switch_off_promptly_when_the_gateway_vanished_mid_link(clock: SimulationClock) -> None:
    """A gateway loses power with a link open: the meter's disconnect is never answered, and
    stopping the meter (and the radio) still ends within its bound instead of hanging."""
    async with VirtualRadio() as radio:
        meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-9"))
        assert radio.link is not None
        gateway = VirtualRadio(link=radio.link, central_address="C0:FF:EE:00:00:03")
        await gateway.start()
        client = BleakClient(await find(gateway, meter), backend=gateway.client_backend, timeout=WAIT_S)
        await client.connect()
        assert gateway.central._on_link is not None
        link, controller = gateway.central._on_link
        link.remove_controller(controller)  # the power cut: off the air, nothing sent
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(meter.stop(), 30.0)
        assert asyncio.get_running_loop().time() - started < 15.0


@pytest.mark.parametrize("turns", range(6))
async def test_a_disconnect_stopped_as_the_link_closes_ends_stopped(
    radio: VirtualRadio, clock: SimulationClock, turns: int
) -> None:
    """A gateway stopping while a meter's link closes is not kept running by that disconnect.

    On Python 3.11 a stop (task cancellation) landing while a wait completes could be dropped
    (CPython gh-86296); the cancellation is placed at each event-loop turn after the link closed.
    """
    meter = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="B-STOP"))
    client = BleakClient(await find(radio, meter), backend=radio.client_backend, timeout=WAIT_S)
    await client.connect()
    backend = client._backend  # the virtual backend exposes bumble's link, below bleak
    assert isinstance(backend, VirtualBleakClient)
    connection = backend.connection
    assert connection is not None
    disconnecting = asyncio.create_task(client.disconnect())
    accepted: list[bool] = []

    async def stop_later() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)  # an exact event-loop turn, not a wait
        accepted.append(disconnecting.cancel())

    def on_link_closed(_reason: int) -> None:  # runs right after the backend saw the link close
        stopper = asyncio.get_running_loop().create_task(stop_later())
        stoppers.add(stopper)

    stoppers: set[asyncio.Task[None]] = set()
    connection.on(connection.EVENT_DISCONNECTION, on_link_closed)
    await asyncio.wait([disconnecting], timeout=WAIT_S)
    await asyncio.gather(*stoppers)
    assert disconnecting.done()
    assert accepted, "the link never closed"
    assert disconnecting.cancelled() == accepted[0], (
        f"a stop {turns} turns after the link closed was accepted and then dropped"
    )
