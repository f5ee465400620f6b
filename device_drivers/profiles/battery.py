"""Battery Level 0x2A19: uint8 percent, 0..100; 101..255 are reserved
(reference/ble-health-profiles.md §2.6; bluetooth-sig-python battery_level.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ._wire import ByteReader
from .errors import DecodeError, EncodeError

BATTERY_LEVEL_OFFSET = 0
BATTERY_LEVEL_MAX_PERCENT = 100


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    percent: int


def decode_battery_level(data: bytes) -> BatteryLevel:
    """Decode Battery Level (exactly one byte, 0..100)."""
    try:
        reader = ByteReader(data)
        percent = reader.uint8("battery level")
        if percent > BATTERY_LEVEL_MAX_PERCENT:
            raise DecodeError(BATTERY_LEVEL_OFFSET, f"battery level {percent} outside 0..100 %")
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Battery Level") from None
    return BatteryLevel(percent)


def encode_battery_level(value: BatteryLevel) -> bytes:
    """Encode Battery Level (one byte)."""
    if not 0 <= value.percent <= BATTERY_LEVEL_MAX_PERCENT:
        raise EncodeError(f"battery level {value.percent} outside 0..100 %")
    return bytes((value.percent,))
