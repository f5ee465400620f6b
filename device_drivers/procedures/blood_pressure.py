"""Blood-pressure cuff collection: indications on 0x2A35 (or, on a cuff that offers only the BLS 1.1
form, Enhanced Blood Pressure Measurement 0x2B34), progress from 0x2A36 notifications.

A cuff indicates its stored measurements (or only the newest, Omron X4 Smart) after the collector
enables indications, then goes quiet or disconnects (reference §2.2, §2.7). The collection ends
``quiet_after_records_s`` after the last measurement, when the link drops, or — before any
measurement — after ``first_indication_s`` without any indication or cuff-pressure notification
(the patient may be measuring; every Intermediate Cuff Pressure notification restarts that wait and
is reported through ``on_cuff_pressure``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bleak.exc import BleakCharacteristicNotFoundError

from device_drivers.profiles import uuids
from device_drivers.profiles.blood_pressure import (
    IntermediateCuffPressure,
    decode_blood_pressure_measurement,
    decode_enhanced_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from device_drivers.profiles.errors import DecodeError
from device_drivers.quirks import STANDARD, MeterQuirks

from ._inbox import Inbox, LinkLost
from .blood_pressure_records import CuffMeasurement
from .client import GattClient, ProcedureTimeouts, describe, subscribe, unsubscribe_all
from .errors import MissingCharacteristic, ProcedureError
from .results import UndecodedValue

logger = logging.getLogger(__name__)

CuffPressureCallback = Callable[[IntermediateCuffPressure], None]
"""Receives each Intermediate Cuff Pressure while the cuff inflates/deflates (progress)."""

MeasurementCallback = Callable[[CuffMeasurement], None]
"""Receives each measurement as soon as it is decoded, before the collection ends."""


class CollectionEnd(enum.Enum):
    QUIET = "quiet"
    DISCONNECTED = "disconnected"
    TIME_LIMIT = "time_limit"


@dataclass(frozen=True, slots=True)
class BloodPressureCollection:
    """Measurements indicated by the cuff on this connection, in arrival order."""

    measurements: tuple[CuffMeasurement, ...]
    cuff_pressure_updates: int
    ended_by: CollectionEnd
    undecodable: tuple[UndecodedValue, ...] = ()


async def collect_blood_pressure(
    client: GattClient,
    *,
    quirks: MeterQuirks = STANDARD,
    timeouts: ProcedureTimeouts | None = None,
    on_cuff_pressure: CuffPressureCallback | None = None,
    on_measurement: MeasurementCallback | None = None,
    disconnected: asyncio.Event | None = None,
) -> BloodPressureCollection:
    """Subscribe and collect stored measurements until the cuff goes quiet or disconnects.

    Args:
        client: a connected BleakClient (or anything shaped like it).
        quirks: from :func:`device_drivers.quirks.quirks_for` (A&D needs the time written before
            this is called; see :func:`device_drivers.procedures.session.run_blood_pressure_session`).
        timeouts: time limits.
        on_cuff_pressure: progress callback for Intermediate Cuff Pressure.
        on_measurement: called with each measurement the moment it is decoded (each indication is
            decoded once), so a caller can store it before the cuff's next indication; the
            measurements are also in the returned collection.
        disconnected: set by the caller's bleak ``disconnected_callback``; a disconnect ends the
            collection normally (most cuffs drop the link after their last indication).

    Raises:
        MissingCharacteristic: the cuff has neither Blood Pressure Measurement nor Enhanced Blood
            Pressure Measurement.
        GattTimeout, GattOperationFailed: a subscription failed.
    """
    del quirks  # no cuff quirk changes the collection itself today; kept for a stable signature
    timeouts = timeouts or ProcedureTimeouts()
    inbox = Inbox(disconnected)
    subscribed: list[str] = []
    try:
        await _subscribe(client, inbox, subscribed, timeouts)
        return await _collect(inbox, timeouts, on_cuff_pressure, on_measurement)
    finally:
        try:
            await unsubscribe_all(client, subscribed, timeouts)
        except ProcedureError as error:
            logger.info("unsubscribe after blood pressure collection failed", extra={"detail": str(error)})


async def _subscribe(
    client: GattClient, inbox: Inbox, subscribed: list[str], timeouts: ProcedureTimeouts
) -> None:
    """Notifications on Intermediate Cuff Pressure (optional), then indications on the measurement:
    Blood Pressure Measurement, or Enhanced Blood Pressure Measurement on a cuff without it."""
    for characteristic in (
        uuids.INTERMEDIATE_CUFF_PRESSURE,
        uuids.BLOOD_PRESSURE_MEASUREMENT,
        uuids.ENHANCED_BLOOD_PRESSURE_MEASUREMENT,
    ):
        if (
            characteristic == uuids.ENHANCED_BLOOD_PRESSURE_MEASUREMENT
            and uuids.BLOOD_PRESSURE_MEASUREMENT in subscribed
        ):
            break
        try:
            await subscribe(client, characteristic, inbox.callback(characteristic), timeouts)
        except BleakCharacteristicNotFoundError:
            logger.debug("cuff lacks a characteristic", extra={"characteristic": describe(characteristic)})
            continue
        subscribed.append(characteristic)
    if not {uuids.BLOOD_PRESSURE_MEASUREMENT, uuids.ENHANCED_BLOOD_PRESSURE_MEASUREMENT} & set(subscribed):
        raise MissingCharacteristic(describe(uuids.BLOOD_PRESSURE_MEASUREMENT))


async def _collect(
    inbox: Inbox,
    timeouts: ProcedureTimeouts,
    on_cuff_pressure: CuffPressureCallback | None,
    on_measurement: MeasurementCallback | None,
) -> BloodPressureCollection:
    measurements: list[CuffMeasurement] = []
    undecodable: list[UndecodedValue] = []
    updates = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeouts.racp_procedure_s
    window = timeouts.first_indication_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            ended_by = CollectionEnd.TIME_LIMIT
            break
        try:
            event = await inbox.next(min(window, remaining))
        except LinkLost:
            ended_by = CollectionEnd.DISCONNECTED
            break
        if event is None:
            ended_by = CollectionEnd.QUIET if loop.time() < deadline else CollectionEnd.TIME_LIMIT
            break
        characteristic, raw = event
        try:
            if characteristic in (
                uuids.BLOOD_PRESSURE_MEASUREMENT,
                uuids.ENHANCED_BLOOD_PRESSURE_MEASUREMENT,
            ):
                measurement: CuffMeasurement = (
                    decode_blood_pressure_measurement(raw)
                    if characteristic == uuids.BLOOD_PRESSURE_MEASUREMENT
                    else decode_enhanced_blood_pressure_measurement(raw)
                )
                measurements.append(measurement)
                window = timeouts.quiet_after_records_s
                if on_measurement is not None:
                    on_measurement(measurement)
            else:
                pressure = decode_intermediate_cuff_pressure(raw)
                updates += 1
                window = timeouts.first_indication_s
                if on_cuff_pressure is not None:
                    on_cuff_pressure(pressure)
        except DecodeError as error:
            logger.warning(
                "undecodable blood pressure value",
                extra={
                    "characteristic": describe(characteristic),
                    "offset": error.offset,
                    "reason": error.reason,
                },
            )
            undecodable.append(UndecodedValue(characteristic, raw, error))
            window = timeouts.quiet_after_records_s
    return BloodPressureCollection(tuple(measurements), updates, ended_by, tuple(undecodable))
