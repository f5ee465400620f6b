"""The glucose meter's Record Access Control Point, byte for byte (reference §2.3 request examples)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakGATTProtocolError

from device_drivers.profiles import uuids
from device_drivers.profiles.glucose import decode_glucose_measurement
from device_drivers.virtual import racp_server
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.racp_server import RacpResponseCode
from device_drivers.virtual.radio import VirtualRadio

from .conftest import START

WAIT_S = 10.0
# Requests as written in reference/ble-health-profiles.md §2.3.
REPORT_ALL = bytes.fromhex("0101")
REPORT_FROM_0X0123 = bytes.fromhex("0103012301")
COUNT_ALL = bytes.fromhex("0401")
ABORT = bytes.fromhex("0300")
DELETE_ALL = bytes.fromhex("0201")


class Collector:
    """Measurement sequence numbers and RACP indications as they arrive."""

    def __init__(self) -> None:
        self.sequence_numbers: list[int] = []
        self.racp: asyncio.Queue[bytes] = asyncio.Queue()

    def on_measurement(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        self.sequence_numbers.append(decode_glucose_measurement(bytes(data)).sequence_number)

    def on_racp(self, _c: BleakGATTCharacteristic, data: bytearray) -> None:
        self.racp.put_nowait(bytes(data))

    async def response(self) -> bytes:
        return await asyncio.wait_for(self.racp.get(), WAIT_S)


@pytest.fixture
async def meter(radio: VirtualRadio, clock: SimulationClock) -> VirtualGlucoseMeter:
    glucose = make_meter("contour-like", clock=clock, serial_number="RACP-1")
    assert isinstance(glucose, VirtualGlucoseMeter)
    for index in range(300):
        glucose.add_record(taken_at=START + dt.timedelta(hours=index), glucose_mg_dl=100)
    await radio.add_meter(glucose)
    return glucose


@pytest.fixture
async def client(radio: VirtualRadio, meter: VirtualGlucoseMeter) -> AsyncIterator[BleakClient]:
    device = await BleakScanner.find_device_by_address(
        meter.address, timeout=WAIT_S, backend=radio.scanner_backend
    )
    assert device is not None
    async with BleakClient(device, backend=radio.client_backend, pair=True, timeout=WAIT_S) as connected:
        yield connected


async def subscribe(client: BleakClient) -> Collector:
    collector = Collector()
    await client.start_notify(uuids.GLUCOSE_MEASUREMENT, collector.on_measurement)
    await client.start_notify(uuids.RECORD_ACCESS_CONTROL_POINT, collector.on_racp)
    return collector


async def test_count_reports_the_number_of_stored_records(client: BleakClient) -> None:
    collector = await subscribe(client)
    await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, COUNT_ALL, response=True)
    assert await collector.response() == bytes.fromhex("05002c01")  # 300 records, uint16 LE
    assert collector.sequence_numbers == []


async def test_report_from_sends_the_records_at_or_after_the_operand(client: BleakClient) -> None:
    collector = await subscribe(client)
    await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, REPORT_FROM_0X0123, response=True)
    assert await collector.response() == bytes.fromhex("06000101")
    assert collector.sequence_numbers == list(range(0x0123, 300))


async def test_racp_write_without_indications_enabled_is_refused(client: BleakClient) -> None:
    with pytest.raises(BleakGATTProtocolError) as refused:
        await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, REPORT_ALL, response=True)
    assert refused.value.code == 0xFD  # CCCD improperly configured


async def test_second_request_while_reporting_is_refused_and_abort_stops_the_report(
    client: BleakClient, meter: VirtualGlucoseMeter
) -> None:
    for index in range(300, 3000):
        meter.add_record(taken_at=START + dt.timedelta(hours=index), glucose_mg_dl=100)
    collector = await subscribe(client)
    await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, REPORT_ALL, response=True)
    with pytest.raises(BleakGATTProtocolError) as busy:
        await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, COUNT_ALL, response=True)
    assert busy.value.code == 0xFE  # procedure already in progress
    await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, ABORT, response=True)
    assert await collector.response() == bytes.fromhex("06000301")
    assert 0 < len(collector.sequence_numbers) < 3000


async def test_no_records_found_and_delete(client: BleakClient, meter: VirtualGlucoseMeter) -> None:
    collector = await subscribe(client)
    await client.write_gatt_char(
        uuids.RECORD_ACCESS_CONTROL_POINT, bytes.fromhex("01030110 27"), response=True
    )
    assert await collector.response() == bytes.fromhex("06000106")  # >= 10000: none
    await client.write_gatt_char(uuids.RECORD_ACCESS_CONTROL_POINT, DELETE_ALL, response=True)
    assert await collector.response() == bytes.fromhex("06000201")
    assert meter.records == []


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (bytes.fromhex("0101"), racp_server.RacpPlan(1, send=(0, 1, 2, 3))),
        (bytes.fromhex("0105"), racp_server.RacpPlan(1, send=(0,))),
        (bytes.fromhex("0106"), racp_server.RacpPlan(1, send=(3,))),
        (bytes.fromhex("0102010b00"), racp_server.RacpPlan(1, send=(0, 1))),
        (bytes.fromhex("0104010b000d00"), racp_server.RacpPlan(1, send=(1, 2, 3))),
        (
            bytes.fromhex("0104010d000b00"),
            racp_server.RacpPlan(1, response_code=RacpResponseCode.INVALID_OPERAND),
        ),
        (bytes.fromhex("0100"), racp_server.RacpPlan(1, response_code=RacpResponseCode.INVALID_OPERATOR)),
        (
            bytes.fromhex("0107"),
            racp_server.RacpPlan(1, response_code=RacpResponseCode.OPERATOR_NOT_SUPPORTED),
        ),
        (bytes.fromhex("010301"), racp_server.RacpPlan(1, response_code=RacpResponseCode.INVALID_OPERAND)),
        (
            bytes.fromhex("0103020000"),
            racp_server.RacpPlan(1, response_code=RacpResponseCode.OPERAND_NOT_SUPPORTED),
        ),
        (bytes.fromhex("0401"), racp_server.RacpPlan(4, count=4)),
        (bytes.fromhex("0201"), racp_server.RacpPlan(2, delete=(0, 1, 2, 3))),
        (bytes.fromhex("0300"), racp_server.RacpPlan(3, abort=True)),
        (bytes.fromhex("0301"), racp_server.RacpPlan(3, response_code=RacpResponseCode.INVALID_OPERATOR)),
        (
            bytes.fromhex("0901"),
            racp_server.RacpPlan(9, response_code=RacpResponseCode.OP_CODE_NOT_SUPPORTED),
        ),
        (bytes.fromhex("01"), racp_server.RacpPlan(1, response_code=RacpResponseCode.INVALID_OPERAND)),
    ],
)
def test_racp_plan(request_bytes: bytes, expected: racp_server.RacpPlan) -> None:
    assert racp_server.plan(request_bytes, [10, 11, 12, 13]) == expected


def test_racp_first_and_last_follow_sequence_order_not_storage_order() -> None:
    reversed_numbers = [3, 2, 1, 0]  # TaiDoc-like: 0 = newest, stored last
    assert racp_server.plan(bytes.fromhex("0105"), reversed_numbers).send == (3,)
    assert racp_server.plan(bytes.fromhex("0101"), reversed_numbers).send == (3, 2, 1, 0)
