"""Stored blood pressure records over RACP (Blood Pressure Service 1.1).

A BLS 1.1 cuff keeps its measurements as Blood Pressure Records 0x2B36 and reports them through the
Record Access Control Point 0x2A52, as a glucose meter does (reference/ble-health-profiles.md §2.2,
§2.3 RACP; GATT Specification Supplement, org.bluetooth.characteristic.blood_pressure_record):

1. Indications on Blood Pressure Record, then on RACP (the RACP CCCD must be set before the write).
2. Write ``01 01`` (every record) on the first sync, else ``01 03 01 <last + 1>``.
3. Reassemble each record from its segments: header bit 0 first segment, bit 1 last segment, bits
   2..7 a counter that goes up by one per segment (mod 64); the segments of one record arrive in a
   row and carry its sequence number. A record whose segments do not follow is kept as undecodable.
4. Decode the recorded characteristic named by the record's UUID: Enhanced Blood Pressure
   Measurement 0x2B34 or Blood Pressure Measurement 0x2A35; each record goes to ``on_record`` as it
   is complete, so the caller can store it before the next one.
5. End on the RACP response: success and "no records found" finish, any other code raises.

Each record's user index is the recorded measurement's User ID. The cursor is the highest sequence
number received, one per meter: that fits a cuff that numbers its records across its users. The GSS
lets a cuff number per user ("loops back to 0 after 65536 records (per user)"), with the records of
the user consented through the User Data Service; such a cuff would need a cursor per user and the
consent procedure, which are not done here. Neither is the E2E-CRC (Blood Pressure Feature bit 6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bleak.exc import BleakCharacteristicNotFoundError

from device_drivers.profiles import uuids
from device_drivers.profiles.blood_pressure import (
    BP_RECORD_COUNTER_MASK,
    BloodPressureMeasurement,
    BloodPressureRecord,
    EnhancedBloodPressureMeasurement,
    decode_blood_pressure_measurement,
    decode_blood_pressure_record,
    decode_enhanced_blood_pressure_measurement,
)
from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.glucose import SEQUENCE_NUMBER_MODULUS
from device_drivers.profiles.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpRequest,
    RacpResponseCode,
    decode_racp_response,
    encode_racp_request,
)

from ._inbox import Inbox, LinkLost
from .client import GattClient, ProcedureTimeouts, describe, subscribe, unsubscribe_all, write
from .errors import GattTimeout, MeterDisconnected, MissingCharacteristic, ProcedureError
from .results import UndecodedValue

logger = logging.getLogger(__name__)

CuffMeasurement = BloodPressureMeasurement | EnhancedBloodPressureMeasurement
"""A cuff measurement: BLS 1.0 Blood Pressure Measurement or its BLS 1.1 enhanced form."""

ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID16 = 0x2B34
BLOOD_PRESSURE_MEASUREMENT_UUID16 = 0x2A35
FINISHED_OK = (RacpResponseCode.SUCCESS, RacpResponseCode.NO_RECORDS_FOUND)


@dataclass(frozen=True, slots=True)
class StoredCuffRecord:
    """One stored measurement and the sequence number the cuff reported it under."""

    sequence_number: int
    measurement: CuffMeasurement


RecordCallback = Callable[[StoredCuffRecord], None]


@dataclass(frozen=True, slots=True)
class BloodPressureRecordSync:
    """Everything one RACP report produced; ``highest_sequence_number`` is the cursor to keep."""

    records: tuple[StoredCuffRecord, ...]
    response_code: RacpResponseCode | None
    highest_sequence_number: int | None
    undecodable: tuple[UndecodedValue, ...] = ()


def decode_recorded_measurement(recorded_uuid: int, value: bytes) -> CuffMeasurement:
    """The measurement a Blood Pressure Record wraps, by the record's UUID field."""
    if recorded_uuid == ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID16:
        return decode_enhanced_blood_pressure_measurement(value)
    if recorded_uuid == BLOOD_PRESSURE_MEASUREMENT_UUID16:
        return decode_blood_pressure_measurement(value)
    raise DecodeError(3, f"recorded characteristic 0x{recorded_uuid:04X} is not a blood pressure measurement")


class RecordAssembler:
    """Joins Blood Pressure Record segments into complete recorded values."""

    def __init__(self) -> None:
        self._parts: list[BloodPressureRecord] = []

    def add(self, segment: BloodPressureRecord) -> tuple[BloodPressureRecord, bytes] | None:
        """The record's first segment and its whole value once the last segment arrived, else None.

        Raises DecodeError when the segment does not continue the record being assembled (the
        partial record is dropped with it).
        """
        if segment.first_segment:
            dropped = self._parts
            self._parts = [segment]
            if dropped:
                raise DecodeError(0, f"record {dropped[0].sequence_number} ended without its last segment")
        elif not self._parts:
            raise DecodeError(0, f"segment of record {segment.sequence_number} without its first segment")
        else:
            previous = self._parts[-1]
            expected = (previous.segment_counter + 1) & BP_RECORD_COUNTER_MASK
            if segment.sequence_number != previous.sequence_number or segment.segment_counter != expected:
                self._parts = []
                raise DecodeError(
                    0,
                    f"segment {segment.segment_counter} of record {segment.sequence_number} does not follow "
                    f"segment {previous.segment_counter} of record {previous.sequence_number}",
                )
            self._parts.append(segment)
        if not segment.last_segment:
            return None
        parts, self._parts = self._parts, []
        return parts[0], b"".join(part.recorded_value for part in parts)


async def sync_blood_pressure_records(
    client: GattClient,
    *,
    last_sequence_number: int | None,
    timeouts: ProcedureTimeouts | None = None,
    disconnected: asyncio.Event | None = None,
    on_record: RecordCallback | None = None,
    on_undecodable: Callable[[UndecodedValue], None] | None = None,
    e2e_crc_present: bool = False,
) -> BloodPressureRecordSync:
    """Report the stored records after ``last_sequence_number`` (all when None).

    ``on_undecodable`` hears each value that could not be decoded, in the order of arrival with the
    records, so a caller can keep its cursor below it. ``e2e_crc_present``: the cuff's Blood Pressure
    Feature has the E2E-CRC bit, so every record ends with a CRC (GSS Blood Pressure Record).

    Raises:
        MissingCharacteristic: the cuff has no Blood Pressure Record or RACP (a BLS 1.0 cuff).
        MeterDisconnected, GattTimeout: the link dropped or the cuff went silent; every record
            completed before was already handed to ``on_record``.
        ProcedureError: the cuff answered the request with an error code.
    """
    timeouts = timeouts or ProcedureTimeouts()
    inbox = Inbox(disconnected)
    subscribed: list[str] = []
    try:
        for characteristic in (uuids.BLOOD_PRESSURE_RECORD, uuids.RECORD_ACCESS_CONTROL_POINT):
            try:
                await subscribe(client, characteristic, inbox.callback(characteristic), timeouts)
            except BleakCharacteristicNotFoundError:
                raise MissingCharacteristic(describe(characteristic)) from None
            subscribed.append(characteristic)
        return await _report(
            client, inbox, last_sequence_number, timeouts, on_record, on_undecodable, e2e_crc_present
        )
    finally:
        try:
            await unsubscribe_all(client, subscribed, timeouts)
        except ProcedureError as error:
            logger.info("unsubscribe after blood pressure records failed", extra={"detail": str(error)})


async def _report(
    client: GattClient,
    inbox: Inbox,
    last_sequence_number: int | None,
    timeouts: ProcedureTimeouts,
    on_record: RecordCallback | None,
    on_undecodable: Callable[[UndecodedValue], None] | None,
    e2e_crc_present: bool,
) -> BloodPressureRecordSync:
    after = None if last_sequence_number is None else last_sequence_number + 1
    if after is None or after >= SEQUENCE_NUMBER_MODULUS:
        request = RacpRequest.report_all_records()
    else:
        request = RacpRequest.report_records_from(after)
    await write(client, uuids.RECORD_ACCESS_CONTROL_POINT, encode_racp_request(request), timeouts)
    assembler = RecordAssembler()
    records: list[StoredCuffRecord] = []
    undecodable: list[UndecodedValue] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeouts.racp_procedure_s
    while True:
        wait = min(timeouts.record_silence_s, deadline - loop.time())
        try:
            event = await inbox.next(wait)
        except LinkLost:
            raise MeterDisconnected(
                f"RACP report of blood pressure records ({len(records)} received)"
            ) from None
        if event is None:
            raise GattTimeout("wait for records on", describe(uuids.BLOOD_PRESSURE_RECORD), max(wait, 0.0))
        characteristic, raw = event
        try:
            if characteristic == uuids.BLOOD_PRESSURE_RECORD:
                complete = assembler.add(decode_blood_pressure_record(raw, e2e_crc_present=e2e_crc_present))
                if complete is None:
                    continue
                first, value = complete
                record = StoredCuffRecord(
                    first.sequence_number, decode_recorded_measurement(first.recorded_uuid, value)
                )
                records.append(record)
                if on_record is not None:
                    on_record(record)
                continue
            response = decode_racp_response(raw)
        except DecodeError as error:
            logger.warning(
                "undecodable blood pressure record",
                extra={
                    "characteristic": describe(characteristic),
                    "offset": error.offset,
                    "reason": error.reason,
                },
            )
            undecodable.append(UndecodedValue(characteristic, raw, error))
            if on_undecodable is not None:
                on_undecodable(undecodable[-1])
            continue
        if (
            isinstance(response, RacpNumberOfRecords)
            or response.request_opcode is not RacpOpcode.REPORT_STORED_RECORDS
        ):
            continue
        if response.response_code not in FINISHED_OK:
            raise ProcedureError(
                f"cuff answered the RACP report with {response.response_code.name.lower()} "
                f"({len(records)} record(s) received)"
            )
        highest = max((r.sequence_number for r in records), default=last_sequence_number)
        return BloodPressureRecordSync(tuple(records), response.response_code, highest, tuple(undecodable))
