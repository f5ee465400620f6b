"""Shared test helpers: wait on a condition with a deadline (no bare sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.enhanced_cuff import VirtualEnhancedBloodPressureCuff
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from testbed.acker import Acker
from vitals.readings import BloodPressureReading, GlucoseReading


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def expected_keys(meters: Sequence[VirtualMeter]) -> set[tuple[str, object]]:
    keys: set[tuple[str, object]] = set()
    for meter in meters:
        if isinstance(meter, VirtualGlucoseMeter):
            keys |= {(meter.serial_number, r.measurement.sequence_number) for r in meter.records}
        elif isinstance(meter, VirtualBloodPressureCuff):
            keys |= {
                (meter.serial_number, (r.measurement.timestamp.to_datetime(), r.measurement.user_id))  # type: ignore[union-attr]
                for r in meter.records
            }
        elif isinstance(meter, VirtualEnhancedBloodPressureCuff):
            keys |= {
                (meter.serial_number, (r.measurement.user_facing_time, r.measurement.user_id))
                for r in meter.records
            }
    return keys


def received_keys(acker: Acker) -> set[tuple[str, object]]:
    keys: set[tuple[str, object]] = set()
    for reading in acker.snapshot():
        serial = reading.device.serial_number or ""
        if isinstance(reading, GlucoseReading):
            keys.add((serial, reading.sequence_number))
        else:
            assert isinstance(reading, BloodPressureReading)
            keys.add((serial, (reading.device_time, reading.user_id)))
    return keys


def missing_by_meter(meters: Sequence[VirtualMeter], acker: Acker) -> dict[str, int]:
    """For failure messages: how many held readings of each meter have not arrived."""
    missing: dict[str, int] = {}
    for serial, _key in expected_keys(meters) - received_keys(acker):
        missing[serial] = missing.get(serial, 0) + 1
    return missing
