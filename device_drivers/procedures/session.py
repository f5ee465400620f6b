"""One connection's worth of work, in the order the meters need it.

Device Information and Battery → quirks → Feature → clock read → clock write (always for A&D, which
indicates nothing until the time is written; otherwise when the clock is off by more than
``clock_tolerance`` and the meter allows writes) → subscribe and collect.

The clock reading returned is the one taken *before* any write: stored records were stamped with
that clock, so it is the one that corrects their timestamps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from device_drivers.profiles.blood_pressure import BloodPressureFeature
from device_drivers.profiles.glucose import GlucoseFeature
from device_drivers.quirks import MeterQuirks

from .blood_pressure import BloodPressureCollection, CuffPressureCallback, collect_blood_pressure
from .client import GattClient, ProcedureTimeouts
from .clock import ClockReading, ClockWrite, Now, read_device_clock, set_device_clock, system_now
from .device_info import (
    MeterIdentity,
    read_blood_pressure_feature,
    read_glucose_feature,
    read_meter_identity,
)
from .glucose import sync_glucose_records
from .results import GlucoseSyncResult, UndecodedValue

DEFAULT_CLOCK_TOLERANCE = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ClockCheck:
    reading: ClockReading | UndecodedValue | None
    write: ClockWrite | None


@dataclass(frozen=True, slots=True)
class BloodPressureSession:
    identity: MeterIdentity
    feature: BloodPressureFeature | UndecodedValue | None
    clock: ClockCheck
    collection: BloodPressureCollection


@dataclass(frozen=True, slots=True)
class GlucoseSession:
    identity: MeterIdentity
    feature: GlucoseFeature | UndecodedValue | None
    clock: ClockCheck
    sync: GlucoseSyncResult


async def check_clock(
    client: GattClient,
    quirks: MeterQuirks,
    *,
    gateway_timezone: dt.tzinfo,
    now: Now = system_now,
    timeouts: ProcedureTimeouts | None = None,
    clock_tolerance: dt.timedelta = DEFAULT_CLOCK_TOLERANCE,
) -> ClockCheck:
    """Read the meter clock, and set it when the quirks demand it or it is off by more than the tolerance."""
    reading = await read_device_clock(
        client, quirks, gateway_timezone=gateway_timezone, now=now, timeouts=timeouts
    )
    off = isinstance(reading, ClockReading) and abs(reading.offset) > clock_tolerance
    unreadable = isinstance(reading, UndecodedValue)
    clock_write = None
    if quirks.write_time_before_indications or off or unreadable:
        clock_write = await set_device_clock(
            client, quirks, gateway_timezone=gateway_timezone, now=now, timeouts=timeouts
        )
    return ClockCheck(reading, clock_write)


async def run_blood_pressure_session(
    client: GattClient,
    *,
    gateway_timezone: dt.tzinfo,
    now: Now = system_now,
    timeouts: ProcedureTimeouts | None = None,
    on_cuff_pressure: CuffPressureCallback | None = None,
    disconnected: asyncio.Event | None = None,
    clock_tolerance: dt.timedelta = DEFAULT_CLOCK_TOLERANCE,
) -> BloodPressureSession:
    """Identity, feature, clock, then the cuff's indications (see module docstring for the order)."""
    timeouts = timeouts or ProcedureTimeouts()
    identity = await read_meter_identity(client, timeouts)
    feature = await read_blood_pressure_feature(client, timeouts)
    clock = await check_clock(
        client,
        identity.quirks,
        gateway_timezone=gateway_timezone,
        now=now,
        timeouts=timeouts,
        clock_tolerance=clock_tolerance,
    )
    collection = await collect_blood_pressure(
        client,
        quirks=identity.quirks,
        timeouts=timeouts,
        on_cuff_pressure=on_cuff_pressure,
        disconnected=disconnected,
    )
    return BloodPressureSession(identity, feature, clock, collection)


async def run_glucose_session(
    client: GattClient,
    *,
    last_sequence_number: int | None,
    gateway_timezone: dt.tzinfo,
    now: Now = system_now,
    timeouts: ProcedureTimeouts | None = None,
    disconnected: asyncio.Event | None = None,
    clock_tolerance: dt.timedelta = DEFAULT_CLOCK_TOLERANCE,
) -> GlucoseSession:
    """Identity, feature, clock, then the RACP transfer (see module docstring for the order).

    Raises what :func:`sync_glucose_records` raises; their ``partial`` results keep the records.
    """
    timeouts = timeouts or ProcedureTimeouts()
    identity = await read_meter_identity(client, timeouts)
    feature = await read_glucose_feature(client, timeouts)
    clock = await check_clock(
        client,
        identity.quirks,
        gateway_timezone=gateway_timezone,
        now=now,
        timeouts=timeouts,
        clock_tolerance=clock_tolerance,
    )
    sync = await sync_glucose_records(
        client,
        last_sequence_number=last_sequence_number,
        quirks=identity.quirks,
        timeouts=timeouts,
        disconnected=disconnected,
    )
    return GlucoseSession(identity, feature, clock, sync)
