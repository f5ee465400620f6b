"""Quirks applied before the first GATT operation, chosen from the advertisement alone, as the
virtual meter sees them on its side of the link."""

from __future__ import annotations

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from device_drivers.procedures.connect import connect_meter
from device_drivers.quirks import (
    A_AND_D_COMPANY_ID,
    A_AND_D_CONNECTION,
    STANDARD_CONNECTION,
    connection_quirks_for,
)
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio


async def advertisement_of(radio: VirtualRadio, meter: VirtualMeter) -> tuple[BLEDevice, AdvertisementData]:
    found = await BleakScanner.discover(timeout=1.0, return_adv=True, backend=radio.scanner_backend)
    return found[meter.address]


async def connect_as_the_gateway(radio: VirtualRadio, meter: VirtualMeter) -> float:
    """Scan, connect with the advertised quirks, read; seconds the meter saw before the first request."""
    device, advertisement = await advertisement_of(radio, meter)
    client = BleakClient(device, backend=radio.client_backend)
    await connect_meter(client, advertisement)
    try:
        assert client.services.get_service("00001810-0000-1000-8000-00805f9b34fb") is not None
    finally:
        await client.disconnect()
    assert len(meter.first_request_after_s) == 1
    return meter.first_request_after_s[0]


async def test_a_cuff_advertising_like_an_a_and_d_gets_its_settle_delay_before_any_gatt_request(
    radio: VirtualRadio, clock: SimulationClock
) -> None:
    """An A&D-like cuff sees no ATT request during the 2 s after the link is up (else it shows E 10)."""
    cuff = await radio.add_meter(make_meter("and-like", clock=clock, serial_number="AD-1"))
    waited_s = await connect_as_the_gateway(radio, cuff)
    assert waited_s >= A_AND_D_CONNECTION.settle_delay_after_connect_s


async def test_a_cuff_without_the_quirk_is_asked_at_once(radio: VirtualRadio, clock: SimulationClock) -> None:
    """A plain cuff's connection starts its GATT work without the A&D wait."""
    cuff = await radio.add_meter(make_meter("silvercrest-like", clock=clock, serial_number="SC-1"))
    waited_s = await connect_as_the_gateway(radio, cuff)
    assert waited_s < A_AND_D_CONNECTION.settle_delay_after_connect_s


def test_the_advertised_quirk_table_matches_the_real_cuff_by_name_or_company() -> None:
    """The real UA-651BLE name, A&D's company identifier, and nothing else select the A&D settle."""
    assert connection_quirks_for("A&D_UA-651BLE_8DA42A", {}) is A_AND_D_CONNECTION
    assert connection_quirks_for(None, {A_AND_D_COMPANY_ID: b"\x00"}) is A_AND_D_CONNECTION
    assert connection_quirks_for("BLEsmart_00000116", {0x020E: b"\x01"}) is STANDARD_CONNECTION
    assert connection_quirks_for(None, {}) is STANDARD_CONNECTION
