"""Stored blood pressure records over RACP (Blood Pressure Service 1.1).

A BLS 1.1 cuff keeps its measurements as Blood Pressure Records 0x2B36 and reports them through the
Record Access Control Point 0x2A52, as a glucose meter does (reference/ble-health-profiles.md §2.2,
§2.3 RACP; GATT Specification Supplement, org.bluetooth.characteristic.blood_pressure_record):

1. Indications on Blood Pressure Record, then on RACP (the RACP CCCD must be set before the write).
2. Write ``01 01`` (every record) on the first sync, else ``01 03 01 <last + 1>`` with the lowest
   position among the cuff's users (below).
3. Reassemble each record from its segments (GSS Blood Pressure Record, field table: Segmentation
   Header boolean8, Sequence Number uint16, UUID uint16, Recorded Characteristic "a part of or a
   complete characteristic value", E2E-CRC 0 or 2 bytes; every segment carries all but the CRC):
   header bit 0 first segment, bit 1 last segment, bits 2..7 a counter that goes up by one per
   segment (mod 64); the segments of one record arrive in a row and carry its sequence number. A
   record whose segments do not follow is kept as undecodable.
4. Decode the recorded characteristic named by the record's UUID: Enhanced Blood Pressure
   Measurement 0x2B34 or Blood Pressure Measurement 0x2A35; each record goes to ``on_record`` as it
   is complete, so the caller can store it before the next one.
5. End on the RACP response: success and "no records found" finish, any other code raises.

Users. Each record's user index is the recorded measurement's User ID (0xFF, unknown user, when it
has none). The GSS numbers records per user: "The sequence number starts at 0 and loops back to 0
after 65536 records (per user)" (GATT Specification Supplement, Blood Pressure Record, Sequence
Number field; the GSS YAML org.bluetooth.characteristic.blood_pressure_record as published in the
Bluetooth SIG's public repository, quoted by bt-hci's generated src/uuid/characteristic.rs). A cuff
shared by two users can then hold user 1's record 7 and user 2's record 3 side by side, and a report
filtered on the sequence number holds the records of every user that pass the filter. So
:class:`RecordCursors` keeps a position per user; the report starts after the lowest, and a record
at or below its own user's position is passed over (a cuff that numbers across its users is the
case where the positions differ little). A user met for the first time in a report that started
above 0 may have records below the start: the report is asked again whole, once, and only that
user's records are taken from it. A user whose numbering never reaches the report's start would not
be seen that way, so the caller names the users that must be read (``bound_users``: the user slots
bound to a patient): while one of them has no position, the report starts at the beginning; once a
record of theirs is collected they have one. Numbers loop back to 0 after 65535: a position near
the top makes the report start at the beginning, and a low number after it is a new record
(:func:`follows`). A cuff that keeps its users apart through the User
Data Service (Blood Pressure Feature bit 7) reports only the consented user's records, and the
consent procedure is not done here. Neither is the E2E-CRC check (Blood Pressure Feature bit 6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bleak.exc import BleakCharacteristicNotFoundError

from device_drivers.profiles import uuids
from device_drivers.profiles.blood_pressure import (
    BP_RECORD_COUNTER_MASK,
    USER_ID_UNKNOWN,
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


def user_of(measurement: CuffMeasurement) -> int:
    """The user index a record counts under: its User ID, or 0xFF (unknown user) without one."""
    return USER_ID_UNKNOWN if measurement.user_id is None else measurement.user_id


#: The position key for every user without a position of their own: the one number a gateway kept
#: for the whole cuff before it kept a position per user. Kept beside the users' own positions, so a
#: user with nothing new since the upgrade keeps that starting point instead of none.
OTHER_USERS = -1

#: A cuff holds far fewer records per user than this (cuffs keep a few hundred): a position this
#: close to 65535 may be followed by records numbered from 0 again, and numbers this close below
#: 65536 are, after such a wrap, records from before it (GSS Blood Pressure Record, Sequence Number:
#: "loops back to 0 after 65536 records (per user)").
WRAP_WINDOW = 4096


def near_wrap(position: int) -> bool:
    """Whether the records after ``position`` may be numbered from 0 again."""
    return position >= SEQUENCE_NUMBER_MODULUS - WRAP_WINDOW


def follows(number: int, position: int) -> bool:
    """Whether record ``number`` comes after ``position`` in a numbering that loops back to 0 after
    65535: a low number after a position near the top is past the wrap, a number near the top
    after a low position is from before it; elsewhere the higher number is the later."""
    if near_wrap(position) and number < WRAP_WINDOW:
        return True
    if position < WRAP_WINDOW and near_wrap(number):
        return False
    return number > position


class RecordCursors:
    """The last sequence number collected per user of one cuff, across syncs and within one.

    ``users``: the positions kept from earlier syncs, per user index. ``meter``: one position for
    every user not in ``users`` (a position kept as one number for the whole cuff, also once some
    users have their own: :data:`OTHER_USERS`); None: such a user has nothing collected yet.
    ``bound_users``: users whose records must not be missed; one without a position makes the
    report start at the beginning. After :meth:`hold` (a value that could not be decoded) records
    are still admitted but move no position, so the next sync asks for the record that failed
    again. Positions follow a user's numbering past 65535 back to 0 (:func:`follows`).
    """

    def __init__(
        self,
        users: Mapping[int, int] | None = None,
        *,
        meter: int | None = None,
        bound_users: Iterable[int] = (),
    ) -> None:
        self._start = dict(users or {})
        self._meter = meter
        self._bound = frozenset(bound_users)
        self._positions = dict(self._start)
        self._collected: set[tuple[int, int]] = set()
        self._held = False
        #: Users with no position when this sync began who had records admitted in it.
        self.new_users: set[int] = set()

    def request_after(self) -> int | None:
        """The sequence number to report after: the lowest position; None to report every record
        (nothing collected yet, a bound user without a position, or a position near 65535, whose
        next records may be numbered from 0 again)."""
        if any(self._start.get(user, self._meter) is None for user in self._bound):
            return None
        known = [*self._start.values(), *([] if self._meter is None else [self._meter])]
        if any(near_wrap(position) for position in known):
            return None
        return min(known) if known else None

    def admit(self, record: StoredCuffRecord) -> bool:
        """True for a record not collected yet (in an earlier sync or in this one)."""
        user = user_of(record.measurement)
        number = record.sequence_number
        floor = self._start.get(user, self._meter)
        key = (user, number)
        if (floor is not None and not follows(number, floor)) or key in self._collected:
            return False
        self._collected.add(key)
        if floor is None:
            self.new_users.add(user)
        if not self._held:
            before = self._positions.get(user, floor)
            if before is None or follows(number, before):
                self._positions[user] = number
        return True

    def hold(self) -> None:
        """Keep every position where it is for the rest of this sync."""
        self._held = True

    @property
    def positions(self) -> dict[int, int]:
        """The position per user to keep (those kept before included; the one for every other user
        under :data:`OTHER_USERS`)."""
        kept = {} if self._meter is None else {OTHER_USERS: self._meter}
        return {**kept, **self._positions}

    @property
    def highest(self) -> int | None:
        """The highest position of any user (the one number for the whole cuff when none is known)."""
        return max(self.positions.values(), default=None)


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
    last_sequence_number: int | None = None,
    cursors: RecordCursors | None = None,
    timeouts: ProcedureTimeouts | None = None,
    disconnected: asyncio.Event | None = None,
    on_record: RecordCallback | None = None,
    on_undecodable: Callable[[UndecodedValue], None] | None = None,
    e2e_crc_present: bool = False,
) -> BloodPressureRecordSync:
    """Report the stored records not collected yet: those after each user's position in ``cursors``
    (default: after ``last_sequence_number`` for every user; all when None).

    Only records ``cursors`` admits reach ``on_record`` and the result. ``on_undecodable`` hears each
    value that could not be decoded, in the order of arrival with the records; from the first one on,
    ``cursors`` holds its positions. ``e2e_crc_present``: the cuff's Blood Pressure Feature has the
    E2E-CRC bit, so the last segment of every record ends with a CRC (GSS Blood Pressure Record).

    Raises:
        MissingCharacteristic: the cuff has no Blood Pressure Record or RACP (a BLS 1.0 cuff).
        MeterDisconnected, GattTimeout: the link dropped or the cuff went silent; every record
            completed before was already handed to ``on_record``.
        ProcedureError: the cuff answered the request with an error code.
    """
    timeouts = timeouts or ProcedureTimeouts()
    cursors = cursors if cursors is not None else RecordCursors(meter=last_sequence_number)
    inbox = Inbox(disconnected)
    subscribed: list[str] = []
    try:
        for characteristic in (uuids.BLOOD_PRESSURE_RECORD, uuids.RECORD_ACCESS_CONTROL_POINT):
            try:
                await subscribe(client, characteristic, inbox.callback(characteristic), timeouts)
            except BleakCharacteristicNotFoundError:
                raise MissingCharacteristic(describe(characteristic)) from None
            subscribed.append(characteristic)
        transfer = _Transfer(cursors, on_record, on_undecodable, e2e_crc_present)
        after = cursors.request_after()
        code = await transfer.report(client, inbox, after, timeouts)
        if after is not None and cursors.new_users:
            # A user first met above the start may have records below it: ask for them all, once.
            code = await transfer.report(client, inbox, None, timeouts)
        return BloodPressureRecordSync(
            tuple(transfer.records), code, cursors.highest, tuple(transfer.undecodable)
        )
    finally:
        try:
            await unsubscribe_all(client, subscribed, timeouts)
        except ProcedureError as error:
            logger.info("unsubscribe after blood pressure records failed", extra={"detail": str(error)})


class _Transfer:
    """The records and undecodable values of one sync, over one or two RACP reports."""

    def __init__(
        self,
        cursors: RecordCursors,
        on_record: RecordCallback | None,
        on_undecodable: Callable[[UndecodedValue], None] | None,
        e2e_crc_present: bool,
    ) -> None:
        self.cursors = cursors
        self.on_record = on_record
        self.on_undecodable = on_undecodable
        self.e2e_crc_present = e2e_crc_present
        self.records: list[StoredCuffRecord] = []
        self.undecodable: list[UndecodedValue] = []

    def _segment(self, assembler: RecordAssembler, raw: bytes) -> None:
        segment = decode_blood_pressure_record(raw, e2e_crc_present=self.e2e_crc_present)
        complete = assembler.add(segment)
        if complete is None:
            return
        first, value = complete
        record = StoredCuffRecord(
            first.sequence_number, decode_recorded_measurement(first.recorded_uuid, value)
        )
        if not self.cursors.admit(record):
            return
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    async def report(
        self, client: GattClient, inbox: Inbox, after: int | None, timeouts: ProcedureTimeouts
    ) -> RacpResponseCode:
        """Run one RACP report (every record when ``after`` is None); its response code."""
        start = None if after is None else after + 1
        if start is None or start >= SEQUENCE_NUMBER_MODULUS:
            request = RacpRequest.report_all_records()
        else:
            request = RacpRequest.report_records_from(start)
        await write(client, uuids.RECORD_ACCESS_CONTROL_POINT, encode_racp_request(request), timeouts)
        assembler = RecordAssembler()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.racp_procedure_s
        while True:
            wait = min(timeouts.record_silence_s, deadline - loop.time())
            try:
                event = await inbox.next(wait)
            except LinkLost:
                raise MeterDisconnected(
                    f"RACP report of blood pressure records ({len(self.records)} received)"
                ) from None
            if event is None:
                raise GattTimeout(
                    "wait for records on", describe(uuids.BLOOD_PRESSURE_RECORD), max(wait, 0.0)
                )
            characteristic, raw = event
            try:
                if characteristic == uuids.BLOOD_PRESSURE_RECORD:
                    self._segment(assembler, raw)
                    continue
                response = decode_racp_response(raw)
            except DecodeError as error:
                self._undecodable(characteristic, raw, error)
                continue
            if (
                isinstance(response, RacpNumberOfRecords)
                or response.request_opcode is not RacpOpcode.REPORT_STORED_RECORDS
            ):
                continue
            if response.response_code not in FINISHED_OK:
                raise ProcedureError(
                    f"cuff answered the RACP report with {response.response_code.name.lower()} "
                    f"({len(self.records)} record(s) received)"
                )
            return response.response_code

    def _undecodable(self, characteristic: str, raw: bytes, error: DecodeError) -> None:
        logger.warning(
            "undecodable blood pressure record",
            extra={
                "characteristic": describe(characteristic),
                "offset": error.offset,
                "reason": error.reason,
            },
        )
        self.cursors.hold()
        self.undecodable.append(UndecodedValue(characteristic, raw, error))
        if self.on_undecodable is not None:
            self.on_undecodable(self.undecodable[-1])
