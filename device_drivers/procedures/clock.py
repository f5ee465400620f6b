"""Meter clock: read it, compute its offset to the gateway clock, correct timestamps, set it.

Meters keep a local wall clock without time zone (Date Time 0x2A08, Current Time 0x2A2B; reference
§2.6). The offset is ``device wall clock - gateway wall clock`` in the gateway's time zone, so a
device timestamp maps back to true time as ``(device_timestamp - offset)`` in that zone, then UTC.
The original device timestamp is always kept beside the corrected one (DESIGN.md, Storage).
Roche uses Date Time instead of CTS; TaiDoc has no clock; CTS write support is optional
(https://github.com/derdilla/blood-pressure-monitor-fl/issues/439), so a refused write is reported,
not raised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bleak.exc import BleakCharacteristicNotFoundError

from device_drivers.profiles import uuids
from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.time import (
    AdjustReason,
    CurrentTime,
    DateTime,
    decode_current_time,
    decode_date_time,
    encode_current_time,
    encode_date_time,
)
from device_drivers.quirks import ClockCharacteristic, MeterQuirks

from .client import GattClient, ProcedureTimeouts, read_optional, write
from .errors import GattOperationFailed
from .results import UndecodedValue

logger = logging.getLogger(__name__)

Now = Callable[[], dt.datetime]
"""Returns the gateway's current time, timezone-aware."""


def system_now() -> dt.datetime:
    """The gateway's clock, UTC."""
    return dt.datetime.now(dt.UTC)


class ClockSource(enum.Enum):
    CURRENT_TIME = "current_time"
    DATE_TIME = "date_time"


_CHARACTERISTIC = {ClockSource.CURRENT_TIME: uuids.CURRENT_TIME, ClockSource.DATE_TIME: uuids.DATE_TIME}


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The meter's clock compared with the gateway's, at one instant."""

    source: ClockSource
    device_time: dt.datetime  # naive: the meter's wall clock
    gateway_time: dt.datetime  # aware
    gateway_timezone: dt.tzinfo

    @property
    def offset(self) -> dt.timedelta:
        """Device wall clock minus gateway wall clock (positive: the meter runs ahead)."""
        gateway_wall = self.gateway_time.astimezone(self.gateway_timezone).replace(tzinfo=None)
        return self.device_time - gateway_wall

    def correct(self, device_timestamp: dt.datetime) -> dt.datetime:
        """True time (aware, UTC) of a timestamp the meter stamped with its own clock."""
        gateway_wall = device_timestamp.replace(tzinfo=None) - self.offset
        return gateway_wall.replace(tzinfo=self.gateway_timezone).astimezone(dt.UTC)


#: How far back a meter clock must have gone between two of its records, or how far a record lies
#: ahead of the meter's clock now, to count as a reset (battery change: the clock restarts from its
#: default date, months or years back; reference §2.7 "battery change may reset clock"). Drift
#: corrections and daylight-saving changes, the gateway's own writes included, move it by hours at
#: most, and are corrected by the clock reading like any offset.
CLOCK_RESET_MIN_JUMP = dt.timedelta(days=1)


def stamped_before_clock_reset(
    device_times: Sequence[dt.datetime | None], clock: ClockReading | None
) -> list[bool]:
    """For records in the order the meter numbered them (oldest first), whether each was stamped
    with a clock the meter has since reset or set, so the clock reading of this sync does not apply
    to it.

    Found from the records themselves. The order is the meter's record sequence number, which goes
    up by one per stored record whatever the clock does (GLS Glucose Measurement Sequence Number,
    BLS 1.1 BP Record sequence number: ../shared/reference/ble-health-profiles.md §2.3, §2.2), so a
    jump in the time stamps between two neighbours is the clock's, not the records' order. Flagged:

    - every record before the last point where the time stamps go back by more than
      :data:`CLOCK_RESET_MIN_JUMP` (a reset);
    - after that reset, every record before the first jump forward by more than
      :data:`CLOCK_RESET_MIN_JUMP` that brings the stamps back to where they were before the reset
      (someone set the clock by hand, or another host wrote it): a reset clock restarts from its
      default date, years back (reference §2.7), and running on its own it regains that ground only
      as slowly as real time passes, so the records between the reset and the set are on a clock
      that no longer runs. A gap that stays short of the pre-reset stamps (the patient not measuring
      for a while) is not a set; after a reset of only days, a gap as long counts as one, and the
      records before it are held as untrusted rather than given a wrong time;
    - every record stamped that much later than the meter's clock shows now (the reset came after it).
    """
    flagged = [False] * len(device_times)
    stamps = [None if t is None else t.replace(tzinfo=None) for t in device_times]
    current_from = 0  # the first record stamped with the clock the meter runs now
    before_reset: dt.datetime | None = None  # the last stamp before the reset that starts there
    previous: dt.datetime | None = None
    for index, stamped in enumerate(stamps):
        if stamped is None:
            continue
        if previous is not None and stamped < previous - CLOCK_RESET_MIN_JUMP:
            current_from, before_reset = index, previous
        elif (
            previous is not None
            and before_reset is not None
            and stamped > previous + CLOCK_RESET_MIN_JUMP
            and stamped >= before_reset - CLOCK_RESET_MIN_JUMP
        ):
            current_from, before_reset = index, None  # set after the reset: the clock runs on from here
        previous = stamped
    for index in range(current_from):
        flagged[index] = stamps[index] is not None
    if clock is not None:
        latest_possible = clock.device_time.replace(tzinfo=None) + CLOCK_RESET_MIN_JUMP
        for index, stamped in enumerate(stamps):
            if stamped is not None and stamped > latest_possible:
                flagged[index] = True
    return flagged


@dataclass(frozen=True, slots=True)
class ClockWrite:
    """Outcome of setting the meter clock. ``refused`` holds the meter's refusal, if any."""

    source: ClockSource
    written_time: dt.datetime  # naive wall clock that was written
    refused: str | None = None

    @property
    def written(self) -> bool:
        return self.refused is None


def _order(quirks: MeterQuirks) -> tuple[ClockSource, ...]:
    if quirks.clock_characteristic is ClockCharacteristic.NONE:
        return ()
    if quirks.clock_characteristic is ClockCharacteristic.DATE_TIME:
        return (ClockSource.DATE_TIME, ClockSource.CURRENT_TIME)
    return (ClockSource.CURRENT_TIME, ClockSource.DATE_TIME)


async def read_device_clock(
    client: GattClient,
    quirks: MeterQuirks,
    *,
    gateway_timezone: dt.tzinfo,
    now: Now = system_now,
    timeouts: ProcedureTimeouts | None = None,
) -> ClockReading | UndecodedValue | None:
    """Read the meter clock (Current Time, or Date Time first for Roche).

    Returns None when the meter has no readable clock or reports an unknown date, and an
    UndecodedValue when the clock bytes do not decode.
    """
    timeouts = timeouts or ProcedureTimeouts()
    for source in _order(quirks):
        characteristic = _CHARACTERISTIC[source]
        raw = await read_optional(client, characteristic, timeouts)
        gateway_time = now()
        if raw is None:
            continue
        try:
            date_time = (
                decode_current_time(raw).date_time
                if source is ClockSource.CURRENT_TIME
                else decode_date_time(raw)
            )
        except DecodeError as error:
            return UndecodedValue(characteristic, raw, error)
        device_time = date_time.to_datetime()
        if device_time is None:
            logger.info("meter clock not set", extra={"clock_source": source.value})
            return None
        return ClockReading(source, device_time, gateway_time, gateway_timezone)
    return None


async def set_device_clock(
    client: GattClient,
    quirks: MeterQuirks,
    *,
    gateway_timezone: dt.tzinfo,
    now: Now = system_now,
    timeouts: ProcedureTimeouts | None = None,
) -> ClockWrite | None:
    """Write the gateway's wall clock (in ``gateway_timezone``) to the meter.

    Current Time is written with adjust reason "external reference time update"; Roche-like meters
    get Date Time. Returns None when the meter has no clock characteristic; a refused write comes
    back as ``ClockWrite.refused`` (CTS write support is optional).
    """
    timeouts = timeouts or ProcedureTimeouts()
    for source in _order(quirks):
        if quirks.time_write_delay_s:
            await asyncio.sleep(quirks.time_write_delay_s)  # A&D sample's pacing between GATT writes
        wall = now().astimezone(gateway_timezone).replace(tzinfo=None)
        if source is ClockSource.CURRENT_TIME:
            payload = encode_current_time(
                CurrentTime.from_datetime(wall, AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE)
            )
        else:
            payload = encode_date_time(DateTime.from_datetime(wall))
        try:
            await write(client, _CHARACTERISTIC[source], payload, timeouts)
        except BleakCharacteristicNotFoundError:
            continue
        except GattOperationFailed as error:
            logger.info(
                "meter refused clock write", extra={"clock_source": source.value, "detail": error.detail}
            )
            return ClockWrite(source, wall.replace(microsecond=0), refused=error.detail)
        return ClockWrite(source, wall.replace(microsecond=0))
    return None
