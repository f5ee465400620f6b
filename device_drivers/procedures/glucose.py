"""Glucose meter collection over RACP (reference §2.3 "Collector procedure").

1. Subscribe: notifications on Glucose Measurement 0x2A18 and Measurement Context 0x2A34 (when
   present), then indications on RACP 0x2A52 — in that order; the RACP CCCD must be set before the
   write or the meter refuses with 0x81/0xFD.
2. Write the request: all records on the first sync (``01 01``), else records with sequence number
   >= last + 1 (``01 03 01 <uint16>``).
3. Collect measurements and contexts until the RACP response ``06 00 01 <code>``; success and
   "no records found" finish normally, any other code raises RacpError; silence longer than
   ``record_silence_s`` sends an abort (``03 00``) and raises SyncTimeout; both keep what arrived.
4. Join each measurement with the context of the same sequence number.

Sequence numbers are uint16 and wrap: when last + 1 would be 65536, all records are requested and
only those after ``last`` in serial order (RFC 1982) are kept; when a ``>=`` transfer ends at 65535,
a follow-up fetches the records after the wrap. A reset (memory cleared, battery change) shows as
"no records found" while the meter's last record has a number before ``last``; then everything
is fetched again (readings are idempotent downstream, so re-sending is harmless). TaiDoc-like
meters number in reverse (0 = newest): the first record only is requested and no cursor is kept
(xDrip BluetoothGlucoseMeter.java).

The cursor (``GlucoseSyncResult.highest_sequence_number``) must be persisted only after the records
are durably stored (step 8 of the reference procedure); this module never stores anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bleak.exc import BleakCharacteristicNotFoundError

from device_drivers.profiles import uuids
from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.glucose import (
    SEQUENCE_NUMBER_MODULUS,
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    decode_glucose_measurement,
    decode_glucose_measurement_context,
    sequence_number_after,
)
from device_drivers.profiles.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    decode_racp_response,
    encode_racp_request,
)
from device_drivers.quirks import STANDARD, MeterQuirks, RecordRequest

from ._inbox import Inbox, LinkLost
from .client import GattClient, ProcedureTimeouts, describe, subscribe, unsubscribe_all, write
from .errors import MeterDisconnected, MissingCharacteristic, ProcedureError, RacpError, SyncTimeout
from .results import GlucoseRecord, GlucoseSyncResult, SequenceEvent, UndecodedValue

logger = logging.getLogger(__name__)

HIGHEST_SEQUENCE_NUMBER = SEQUENCE_NUMBER_MODULUS - 1
FINISHED_OK = (RacpResponseCode.SUCCESS, RacpResponseCode.NO_RECORDS_FOUND)


@dataclass
class _Bucket:
    """Values received during one RACP request."""

    measurements: list[GlucoseMeasurement] = field(default_factory=list)
    contexts: list[GlucoseMeasurementContext] = field(default_factory=list)


class _Transfer:
    def __init__(self, client: GattClient, inbox: Inbox, timeouts: ProcedureTimeouts) -> None:
        self.client = client
        self.inbox = inbox
        self.timeouts = timeouts
        self.requests: list[RacpRequest] = []
        self.kept: list[GlucoseMeasurement] = []
        self.contexts: list[GlucoseMeasurementContext] = []
        self.undecodable: list[UndecodedValue] = []
        self.response_code: RacpResponseCode | None = None
        self.event = SequenceEvent.NONE

    def result(self, cursor: int | None, event: SequenceEvent) -> GlucoseSyncResult:
        seen: set[tuple[int, bytes]] = set()
        unique: list[GlucoseMeasurement] = []
        for measurement in self.kept:
            key = (measurement.sequence_number, measurement.raw)
            if key not in seen:
                seen.add(key)
                unique.append(measurement)
        by_sequence = {context.sequence_number: context for context in self.contexts}
        records: list[GlucoseRecord] = []
        missing: list[int] = []
        for measurement in unique:
            context = by_sequence.pop(measurement.sequence_number, None)
            if measurement.context_follows and context is None:
                missing.append(measurement.sequence_number)
            records.append(GlucoseRecord(measurement, context))
        return GlucoseSyncResult(
            tuple(records),
            tuple(self.requests),
            self.response_code,
            cursor,
            event,
            tuple(self.undecodable),
            tuple(by_sequence.values()),
            tuple(missing),
        )

    async def run(self, request: RacpRequest) -> tuple[RacpResponseCode, _Bucket]:
        """Write one request and collect until its RACP response."""
        self.requests.append(request)
        bucket = _Bucket()
        await write(
            self.client, uuids.RECORD_ACCESS_CONTROL_POINT, encode_racp_request(request), self.timeouts
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.racp_procedure_s
        while True:
            wait = min(self.timeouts.record_silence_s, deadline - loop.time())
            try:
                event = await self.inbox.next(wait)
            except LinkLost:
                self.keep(bucket)
                raise MeterDisconnected(f"RACP {request.opcode.name.lower()}") from None
            if event is None:
                self.keep(bucket)
                raise _Stalled(max(wait, 0.0))
            characteristic, raw = event
            response = self._file(characteristic, raw, bucket)
            if response is None:
                continue
            if isinstance(response, RacpNumberOfRecords):
                continue
            if response.request_opcode != request.opcode:
                logger.info(
                    "RACP response to another request ignored",
                    extra={"request_opcode": int(response.request_opcode)},
                )
                continue
            return response.response_code, bucket

    def keep(self, bucket: _Bucket) -> None:
        self.kept.extend(bucket.measurements)
        self.contexts.extend(bucket.contexts)

    def _file(
        self, characteristic: str, raw: bytes, bucket: _Bucket
    ) -> RacpResponse | RacpNumberOfRecords | None:
        try:
            if characteristic == uuids.GLUCOSE_MEASUREMENT:
                bucket.measurements.append(decode_glucose_measurement(raw))
            elif characteristic == uuids.GLUCOSE_MEASUREMENT_CONTEXT:
                bucket.contexts.append(decode_glucose_measurement_context(raw))
            elif characteristic == uuids.RECORD_ACCESS_CONTROL_POINT:
                return decode_racp_response(raw)
        except DecodeError as error:
            logger.warning(
                "undecodable glucose value",
                extra={
                    "characteristic": describe(characteristic),
                    "offset": error.offset,
                    "reason": error.reason,
                },
            )
            self.undecodable.append(UndecodedValue(characteristic, raw, error))
        return None

    async def abort(self) -> bool:
        """Send Abort Operation; True when the meter acknowledged it in time."""
        request = RacpRequest.abort_operation()
        self.requests.append(request)
        try:
            await write(
                self.client, uuids.RECORD_ACCESS_CONTROL_POINT, encode_racp_request(request), self.timeouts
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeouts.abort_response_s
            scratch = _Bucket()
            while (remaining := deadline - loop.time()) > 0:
                event = await self.inbox.next(remaining)
                if event is None:
                    break
                response = self._file(*event, scratch)
                if (
                    isinstance(response, RacpResponse)
                    and response.request_opcode is RacpOpcode.ABORT_OPERATION
                ):
                    self.keep(scratch)
                    return response.response_code is RacpResponseCode.SUCCESS
            self.keep(scratch)
        except (ProcedureError, LinkLost) as error:
            logger.info("RACP abort not delivered", extra={"detail": str(error)})
        return False


class _Stalled(Exception):
    def __init__(self, waited_s: float) -> None:
        self.waited_s = waited_s


def _serial_max(sequence_numbers: list[int], start: int | None) -> int | None:
    best = start
    for number in sequence_numbers:
        if best is None or sequence_number_after(number, best):
            best = number
    return best


async def sync_glucose_records(
    client: GattClient,
    *,
    last_sequence_number: int | None,
    quirks: MeterQuirks = STANDARD,
    timeouts: ProcedureTimeouts | None = None,
    disconnected: asyncio.Event | None = None,
) -> GlucoseSyncResult:
    """Fetch the records the gateway has not seen yet.

    Args:
        client: a connected BleakClient (or anything shaped like it).
        last_sequence_number: the persisted cursor from the previous sync; None on the first sync.
        quirks: from :func:`device_drivers.quirks.quirks_for`.
        timeouts: procedure time limits.
        disconnected: set by the caller's bleak ``disconnected_callback``; ends waits at once.

    Raises:
        RacpError: the meter answered with an error response code (``partial`` has the records).
        SyncTimeout: the meter went silent; an abort was sent (``partial`` has the records).
        MeterDisconnected: the link dropped mid-transfer (``partial`` has the records).
        GattTimeout, GattOperationFailed: a subscription or the RACP write failed.
        MissingCharacteristic: the meter lacks Glucose Measurement or RACP.
    """
    timeouts = timeouts or ProcedureTimeouts()
    inbox = Inbox(disconnected)
    subscribed: list[str] = []
    transfer = _Transfer(client, inbox, timeouts)
    try:
        await _subscribe_required(client, uuids.GLUCOSE_MEASUREMENT, inbox, timeouts, subscribed)
        try:
            await subscribe(
                client,
                uuids.GLUCOSE_MEASUREMENT_CONTEXT,
                inbox.callback(uuids.GLUCOSE_MEASUREMENT_CONTEXT),
                timeouts,
            )
            subscribed.append(uuids.GLUCOSE_MEASUREMENT_CONTEXT)
        except BleakCharacteristicNotFoundError:
            logger.debug("meter has no Glucose Measurement Context")
        await _subscribe_required(client, uuids.RECORD_ACCESS_CONTROL_POINT, inbox, timeouts, subscribed)
        try:
            return await _collect(transfer, last_sequence_number, quirks)
        except _Stalled as stalled:
            acknowledged = await transfer.abort()
            partial = transfer.result(_partial_cursor(transfer, last_sequence_number, quirks), transfer.event)
            raise SyncTimeout(stalled.waited_s, partial, abort_acknowledged=acknowledged) from None
        except _RacpFailure as failure:
            partial = transfer.result(_partial_cursor(transfer, last_sequence_number, quirks), transfer.event)
            raise RacpError(failure.opcode, failure.code, partial) from None
        except MeterDisconnected as lost:
            partial = transfer.result(_partial_cursor(transfer, last_sequence_number, quirks), transfer.event)
            raise MeterDisconnected(lost.during, partial) from None
    finally:
        try:
            await unsubscribe_all(client, subscribed, timeouts)
        except ProcedureError as error:
            logger.info("unsubscribe after glucose sync failed", extra={"detail": str(error)})


def _partial_cursor(transfer: _Transfer, last: int | None, quirks: MeterQuirks) -> int | None:
    if quirks.sequence_numbers_reversed:
        return None
    return _serial_max([m.sequence_number for m in transfer.kept], last)


class _RacpFailure(Exception):
    def __init__(self, opcode: RacpOpcode, code: RacpResponseCode) -> None:
        self.opcode = opcode
        self.code = code


async def _subscribe_required(
    client: GattClient, characteristic: str, inbox: Inbox, timeouts: ProcedureTimeouts, subscribed: list[str]
) -> None:
    try:
        await subscribe(client, characteristic, inbox.callback(characteristic), timeouts)
    except BleakCharacteristicNotFoundError:
        raise MissingCharacteristic(describe(characteristic)) from None
    subscribed.append(characteristic)


async def _fetch(
    transfer: _Transfer, request: RacpRequest, keep: Callable[[GlucoseMeasurement], bool] = lambda _m: True
) -> tuple[RacpResponseCode, list[GlucoseMeasurement]]:
    code, bucket = await transfer.run(request)
    dropped = {m.sequence_number for m in bucket.measurements if not keep(m)}
    bucket.measurements = [m for m in bucket.measurements if keep(m)]
    bucket.contexts = [c for c in bucket.contexts if c.sequence_number not in dropped]
    transfer.keep(bucket)
    if code not in FINISHED_OK:
        raise _RacpFailure(request.opcode, code)
    transfer.response_code = code
    return code, bucket.measurements


async def _collect(transfer: _Transfer, last: int | None, quirks: MeterQuirks) -> GlucoseSyncResult:
    if quirks.record_request is RecordRequest.FIRST_RECORD_ONLY or quirks.sequence_numbers_reversed:
        request = (
            RacpRequest.report_first_record()
            if quirks.record_request is RecordRequest.FIRST_RECORD_ONLY
            else RacpRequest.report_all_records()
        )
        await _fetch(transfer, request)
        return transfer.result(None, SequenceEvent.NONE)
    if last is None:
        _code, received = await _fetch(transfer, RacpRequest.report_all_records())
        return transfer.result(_serial_max([m.sequence_number for m in received], None), SequenceEvent.NONE)
    following = (last + 1) % SEQUENCE_NUMBER_MODULUS
    if following == 0:
        transfer.event = SequenceEvent.WRAPAROUND
        await _fetch(
            transfer,
            RacpRequest.report_all_records(),
            lambda m: sequence_number_after(m.sequence_number, last),
        )
        return transfer.result(_partial_cursor(transfer, last, quirks), SequenceEvent.WRAPAROUND)
    code, received = await _fetch(transfer, RacpRequest.report_records_from(following))
    if code is RacpResponseCode.NO_RECORDS_FOUND:
        if await _counter_went_back(transfer, last):
            transfer.event = SequenceEvent.RESET
            transfer.kept.clear()
            transfer.contexts.clear()
            _code, received = await _fetch(transfer, RacpRequest.report_all_records())
            return transfer.result(
                _serial_max([m.sequence_number for m in received], None), SequenceEvent.RESET
            )
        return transfer.result(last, SequenceEvent.NONE)
    if any(m.sequence_number == HIGHEST_SEQUENCE_NUMBER for m in received):
        transfer.event = SequenceEvent.WRAPAROUND
        await _fetch(
            transfer,
            RacpRequest.report_all_records(),
            lambda m: sequence_number_after(m.sequence_number, HIGHEST_SEQUENCE_NUMBER),
        )
        return transfer.result(_partial_cursor(transfer, last, quirks), SequenceEvent.WRAPAROUND)
    return transfer.result(_partial_cursor(transfer, last, quirks), SequenceEvent.NONE)


async def _counter_went_back(transfer: _Transfer, last: int) -> bool:
    """Ask for the meter's last record; True when its number comes before ``last`` (a reset)."""
    code, bucket = await transfer.run(RacpRequest.report_last_record())  # a probe: its record is not kept
    if code is not RacpResponseCode.SUCCESS or not bucket.measurements:
        return False
    newest = bucket.measurements[-1].sequence_number
    went_back = newest != last and not sequence_number_after(newest, last)
    if went_back:
        logger.warning(
            "glucose sequence numbers reset",
            extra={"last_sequence_number": last, "meter_last_sequence_number": newest},
        )
    return went_back
