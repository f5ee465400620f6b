"""Date Time 0x2A08, Current Time 0x2A2B and Local Time Information 0x2A0F.

Layouts (reference/ble-health-profiles.md §2.6; Nordic DateTimeDataCallback.readDateTime,
bluetooth-sig-python date_time.py / current_time.py / local_time_information.py):

    Date Time (7)       year uint16 (1582..9999, 0 unknown) | month uint8 (1..12, 0 unknown)
                        | day uint8 (1..31, 0 unknown) | hours 0..23 | minutes 0..59 | seconds 0..59
    Current Time (10)   Date Time (7) | day of week uint8 (0 unknown, 1 Monday .. 7 Sunday)
                        | fractions256 uint8 | adjust reason uint8 (bit flags)
    Local Time Info (2) time zone sint8, 15-minute steps (-48..+56, -128 unknown)
                        | DST offset uint8 (0, 2, 4, 8 = +0, +0.5, +1, +2 h; 255 unknown)

Date Time carries no time zone: it is the meter's local wall clock. Out-of-range fields and
impossible dates (2024-02-30) are a DecodeError naming the field's offset.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from dataclasses import dataclass

from ._wire import ByteReader, sint_le, uint_le
from .errors import DecodeError, EncodeError

DATE_TIME_SIZE = 7
DATE_TIME_YEAR_OFFSET = 0
DATE_TIME_MONTH_OFFSET = 2
DATE_TIME_DAY_OFFSET = 3
DATE_TIME_HOURS_OFFSET = 4
DATE_TIME_MINUTES_OFFSET = 5
DATE_TIME_SECONDS_OFFSET = 6
YEAR_UNKNOWN = 0
YEAR_MIN = 1582
YEAR_MAX = 9999

CURRENT_TIME_SIZE = 10
CURRENT_TIME_DAY_OF_WEEK_OFFSET = 7
CURRENT_TIME_FRACTIONS256_OFFSET = 8
CURRENT_TIME_ADJUST_REASON_OFFSET = 9

LOCAL_TIME_INFORMATION_SIZE = 2
LOCAL_TIME_ZONE_OFFSET = 0
LOCAL_TIME_DST_OFFSET = 1
TIME_ZONE_UNKNOWN = -128
TIME_ZONE_MIN = -48
TIME_ZONE_MAX = 56
TIME_ZONE_STEP_MINUTES = 15


@dataclass(frozen=True, slots=True)
class DateTime:
    """A wire Date Time: the meter's local wall clock, fields 0 meaning "unknown" where allowed."""

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    @classmethod
    def from_datetime(cls, value: dt.datetime) -> DateTime:
        """The wall-clock fields of ``value`` (its tzinfo, if any, is ignored; microseconds dropped)."""
        return cls(value.year, value.month, value.day, value.hour, value.minute, value.second)

    @property
    def is_complete(self) -> bool:
        """True when year, month and day are all known."""
        return self.year != YEAR_UNKNOWN and self.month != 0 and self.day != 0

    def to_datetime(self) -> dt.datetime | None:
        """Naive local datetime, or None when year, month or day is unknown."""
        if not self.is_complete:
            return None
        return dt.datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)

    def isoformat(self) -> str | None:
        """ISO 8601 without offset (the meter's wall clock), or None when incomplete."""
        value = self.to_datetime()
        return None if value is None else value.isoformat()


class DayOfWeek(enum.IntEnum):
    """Day of Week field of Current Time (0 unknown)."""

    UNKNOWN = 0
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


class AdjustReason(enum.IntFlag):
    """Adjust Reason bits of Current Time (bits 4..7 reserved)."""

    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time 0x2A2B."""

    date_time: DateTime
    day_of_week: DayOfWeek
    fractions256: int
    adjust_reason: AdjustReason

    @classmethod
    def from_datetime(
        cls, value: dt.datetime, adjust_reason: AdjustReason = AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE
    ) -> CurrentTime:
        """The Current Time a collector writes to set the meter to ``value`` (local wall clock)."""
        return cls(
            DateTime.from_datetime(value),
            DayOfWeek(value.isoweekday()),
            value.microsecond * 256 // 1_000_000,
            adjust_reason,
        )


class DstOffset(enum.IntEnum):
    """DST offset of Local Time Information."""

    STANDARD_TIME = 0
    HALF_AN_HOUR_DAYLIGHT_TIME = 2
    DAYLIGHT_TIME = 4
    DOUBLE_DAYLIGHT_TIME = 8
    UNKNOWN = 255


_DST_MINUTES = {
    DstOffset.STANDARD_TIME: 0,
    DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME: 30,
    DstOffset.DAYLIGHT_TIME: 60,
    DstOffset.DOUBLE_DAYLIGHT_TIME: 120,
}


@dataclass(frozen=True, slots=True)
class LocalTimeInformation:
    """Local Time Information 0x2A0F."""

    time_zone_quarter_hours: int | None
    dst_offset: DstOffset

    @property
    def utc_offset(self) -> dt.timedelta | None:
        """Time zone plus DST offset, or None when either is unknown."""
        if self.time_zone_quarter_hours is None or self.dst_offset is DstOffset.UNKNOWN:
            return None
        minutes = self.time_zone_quarter_hours * TIME_ZONE_STEP_MINUTES + _DST_MINUTES[self.dst_offset]
        return dt.timedelta(minutes=minutes)


_RANGES = (
    ("month", DATE_TIME_MONTH_OFFSET, 0, 12),
    ("day", DATE_TIME_DAY_OFFSET, 0, 31),
    ("hours", DATE_TIME_HOURS_OFFSET, 0, 23),
    ("minutes", DATE_TIME_MINUTES_OFFSET, 0, 59),
    ("seconds", DATE_TIME_SECONDS_OFFSET, 0, 59),
)


def read_date_time(reader: ByteReader) -> DateTime:
    """Read a 7-byte Date Time at the reader's offset, validating every field."""
    base = reader.offset
    year = reader.uint16("Date Time year")
    if year != YEAR_UNKNOWN and not YEAR_MIN <= year <= YEAR_MAX:
        raise DecodeError(base + DATE_TIME_YEAR_OFFSET, f"year {year} outside {YEAR_MIN}..{YEAR_MAX}")
    values = [year]
    for name, field_offset, low, high in _RANGES:
        value = reader.uint8(f"Date Time {name}")
        if not low <= value <= high:
            raise DecodeError(base + field_offset, f"{name} {value} outside {low}..{high}")
        values.append(value)
    date_time = DateTime(*values)
    if date_time.is_complete and date_time.day > calendar.monthrange(year, date_time.month)[1]:
        raise DecodeError(
            base + DATE_TIME_DAY_OFFSET, f"day {date_time.day} does not exist in {year}-{date_time.month:02d}"
        )
    return date_time


def encode_date_time(value: DateTime) -> bytes:
    """Encode a Date Time (7 bytes). Raises EncodeError for out-of-range fields."""
    if value.year != YEAR_UNKNOWN and not YEAR_MIN <= value.year <= YEAR_MAX:
        raise EncodeError(f"year {value.year} outside {YEAR_MIN}..{YEAR_MAX}")
    fields = (value.month, value.day, value.hours, value.minutes, value.seconds)
    for (name, _offset, low, high), field in zip(_RANGES, fields, strict=True):
        if not low <= field <= high:
            raise EncodeError(f"{name} {field} outside {low}..{high}")
    return uint_le(value.year, 2, "year") + bytes(fields)


def decode_date_time(data: bytes) -> DateTime:
    """Decode a Date Time 0x2A08 value (exactly 7 bytes)."""
    try:
        reader = ByteReader(data)
        value = read_date_time(reader)
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Date Time") from None
    return value


def decode_current_time(data: bytes) -> CurrentTime:
    """Decode a Current Time 0x2A2B value (exactly 10 bytes)."""
    try:
        reader = ByteReader(data)
        date_time = read_date_time(reader)
        day_of_week = reader.uint8("day of week")
        if day_of_week > DayOfWeek.SUNDAY:
            raise DecodeError(CURRENT_TIME_DAY_OF_WEEK_OFFSET, f"day of week {day_of_week} outside 0..7")
        fractions256 = reader.uint8("fractions256")
        adjust_reason = AdjustReason(reader.uint8("adjust reason"))
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Current Time") from None
    return CurrentTime(date_time, DayOfWeek(day_of_week), fractions256, adjust_reason)


def encode_current_time(value: CurrentTime) -> bytes:
    """Encode a Current Time (10 bytes), as a collector writes it to set the meter clock."""
    if not 0 <= value.fractions256 <= 0xFF:
        raise EncodeError(f"fractions256 {value.fractions256} outside 0..255")
    return (
        encode_date_time(value.date_time)
        + bytes((int(value.day_of_week), value.fractions256))
        + uint_le(int(value.adjust_reason), 1, "adjust reason")
    )


def decode_local_time_information(data: bytes) -> LocalTimeInformation:
    """Decode Local Time Information 0x2A0F (exactly 2 bytes)."""
    try:
        reader = ByteReader(data)
        zone = reader.sint8("time zone")
        if zone != TIME_ZONE_UNKNOWN and not TIME_ZONE_MIN <= zone <= TIME_ZONE_MAX:
            raise DecodeError(
                LOCAL_TIME_ZONE_OFFSET, f"time zone {zone} outside {TIME_ZONE_MIN}..{TIME_ZONE_MAX}"
            )
        dst_code = reader.uint8("DST offset")
        try:
            dst = DstOffset(dst_code)
        except ValueError:
            raise DecodeError(LOCAL_TIME_DST_OFFSET, f"DST offset code {dst_code} is reserved") from None
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Local Time Information") from None
    return LocalTimeInformation(None if zone == TIME_ZONE_UNKNOWN else zone, dst)


def encode_local_time_information(value: LocalTimeInformation) -> bytes:
    """Encode Local Time Information (2 bytes)."""
    zone = TIME_ZONE_UNKNOWN if value.time_zone_quarter_hours is None else value.time_zone_quarter_hours
    if zone != TIME_ZONE_UNKNOWN and not TIME_ZONE_MIN <= zone <= TIME_ZONE_MAX:
        raise EncodeError(f"time zone {zone} outside {TIME_ZONE_MIN}..{TIME_ZONE_MAX}")
    return sint_le(zone, 1, "time zone") + bytes((int(value.dst_offset),))
