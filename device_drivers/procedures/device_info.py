"""Device Information, Battery and Feature reads, done on every connection.

Absent characteristics read as None; a value that does not decode is kept with its DecodeError
(``undecodable``) rather than dropped, so an operator can see what the meter sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from device_drivers.profiles import uuids
from device_drivers.profiles.battery import decode_battery_level
from device_drivers.profiles.blood_pressure import BloodPressureFeature, decode_blood_pressure_feature
from device_drivers.profiles.device_information import DeviceInformation, decode_utf8_string
from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.glucose import GlucoseFeature, decode_glucose_feature
from device_drivers.quirks import MeterQuirks, quirks_for

from .client import GattClient, ProcedureTimeouts, describe, read_optional
from .results import UndecodedValue

logger = logging.getLogger(__name__)

_DIS_FIELDS = (
    ("manufacturer_name", uuids.MANUFACTURER_NAME_STRING),
    ("model_number", uuids.MODEL_NUMBER_STRING),
    ("serial_number", uuids.SERIAL_NUMBER_STRING),
    ("hardware_revision", uuids.HARDWARE_REVISION_STRING),
    ("firmware_revision", uuids.FIRMWARE_REVISION_STRING),
    ("software_revision", uuids.SOFTWARE_REVISION_STRING),
)


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the gateway learns about a meter at the start of every connection."""

    device_information: DeviceInformation
    battery_level_percent: int | None
    quirks: MeterQuirks
    undecodable: tuple[UndecodedValue, ...] = ()


async def read_device_information(
    client: GattClient, timeouts: ProcedureTimeouts
) -> tuple[DeviceInformation, list[UndecodedValue]]:
    """Read every Device Information string the meter has."""
    values: dict[str, str | None] = {}
    undecodable: list[UndecodedValue] = []
    for field, characteristic in _DIS_FIELDS:
        raw = await read_optional(client, characteristic, timeouts)
        if raw is None:
            values[field] = None
            continue
        try:
            values[field] = decode_utf8_string(raw)
        except DecodeError as error:
            undecodable.append(UndecodedValue(characteristic, raw, error))
            values[field] = None
    return DeviceInformation(**values), undecodable


async def read_meter_identity(client: GattClient, timeouts: ProcedureTimeouts | None = None) -> MeterIdentity:
    """Device Information + Battery Level, and the quirks selected by manufacturer and model."""
    timeouts = timeouts or ProcedureTimeouts()
    information, undecodable = await read_device_information(client, timeouts)
    battery: int | None = None
    raw = await read_optional(client, uuids.BATTERY_LEVEL, timeouts)
    if raw is not None:
        try:
            battery = decode_battery_level(raw).percent
        except DecodeError as error:
            undecodable.append(UndecodedValue(uuids.BATTERY_LEVEL, raw, error))
    quirks = quirks_for(information.manufacturer_name, information.model_number)
    for item in undecodable:
        logger.warning(
            "undecodable device value",
            extra={
                "characteristic": describe(item.characteristic),
                "offset": item.error.offset,
                "reason": item.error.reason,
            },
        )
    return MeterIdentity(information, battery, quirks, tuple(undecodable))


async def read_blood_pressure_feature(
    client: GattClient, timeouts: ProcedureTimeouts | None = None
) -> BloodPressureFeature | UndecodedValue | None:
    """Blood Pressure Feature 0x2A49, None when absent, UndecodedValue when malformed."""
    raw = await read_optional(client, uuids.BLOOD_PRESSURE_FEATURE, timeouts or ProcedureTimeouts())
    if raw is None:
        return None
    try:
        return decode_blood_pressure_feature(raw)
    except DecodeError as error:
        return UndecodedValue(uuids.BLOOD_PRESSURE_FEATURE, raw, error)


async def read_glucose_feature(
    client: GattClient, timeouts: ProcedureTimeouts | None = None
) -> GlucoseFeature | UndecodedValue | None:
    """Glucose Feature 0x2A51, None when absent, UndecodedValue when malformed.

    Bit 10 (multiple bond) clear means bonding the gateway will break the phone app's bond (§2.3).
    """
    raw = await read_optional(client, uuids.GLUCOSE_FEATURE, timeouts or ProcedureTimeouts())
    if raw is None:
        return None
    try:
        return decode_glucose_feature(raw)
    except DecodeError as error:
        return UndecodedValue(uuids.GLUCOSE_FEATURE, raw, error)
