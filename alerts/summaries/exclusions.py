"""Why a reading is left out of the summaries: one reason code per cause, counted once each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict

from storage.readings.protocol import AnyReading
from vitals import plausibility
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    GlucoseReading,
    SampleLocation,
    SampleType,
    SensorStatus,
)

ExclusionReason = Literal[
    "not_measured",
    "implausible_value",
    "body_movement",
    "cuff_too_loose",
    "improper_position",
    "control_solution",
    "result_too_high",
    "result_too_low",
    "sensor_fault",
    "device_error",
]
"""Why a reading is left out of summaries, one code per cause (the front end words them):

- not_measured: the meter sent no value (a cuff's "Err", a NaN or reserved value);
- implausible_value: outside the plausibility limits of vitals.plausibility, or diastolic not below
  systolic (a decoding fault or meter error);
- body_movement, cuff_too_loose, improper_position: the cuff's Measurement Status flags (DQ-02);
- control_solution: a meter test with control solution, not the patient's blood;
- result_too_high, result_too_low: the meter's "HI" / "LO" (beyond its measuring range: the true
  value is unknown, and clinically extreme);
- sensor_fault: another meter annunciation that invalidates the value (strip, sample size,
  temperature, sensor fault, interrupted read);
- device_error: the gateway or meter marked the reading invalid for a reason not listed above.
"""
EXCLUSION_REASONS: Final[tuple[ExclusionReason, ...]] = get_args(ExclusionReason)
_BP_STATUS_REASON: Final[dict[BloodPressureStatus, ExclusionReason]] = {
    BloodPressureStatus.BODY_MOVEMENT: "body_movement",
    BloodPressureStatus.CUFF_TOO_LOOSE: "cuff_too_loose",
    BloodPressureStatus.IMPROPER_POSITION: "improper_position",
}


_SENSOR_REASON: Final[dict[SensorStatus, ExclusionReason]] = {
    SensorStatus.RESULT_TOO_HIGH: "result_too_high",
    SensorStatus.RESULT_TOO_LOW: "result_too_low",
}


def exclusion_reasons(reading: AnyReading) -> list[ExclusionReason]:
    """Every reason `reading` is left out of summaries, most telling first; empty when it enters them."""
    if isinstance(reading, BloodPressureReading):
        return _bp_reasons(reading)
    return _glucose_reasons(reading)


def _bp_reasons(reading: BloodPressureReading) -> list[ExclusionReason]:
    reasons: list[ExclusionReason] = []
    if not reading.valid:
        systolic, diastolic = reading.systolic_mmhg, reading.diastolic_mmhg
        if systolic is None or diastolic is None:
            reasons.append("not_measured")
        limits = (
            (plausibility.SYSTOLIC_MMHG, systolic),
            (plausibility.DIASTOLIC_MMHG, diastolic),
            (plausibility.MEAN_ARTERIAL_MMHG, reading.mean_arterial_mmhg),
            (plausibility.PULSE_BPM, reading.pulse_bpm),
        )
        if any(value is not None and not limit.contains(value) for limit, value in limits) or (
            systolic is not None and diastolic is not None and diastolic >= systolic
        ):
            reasons.append("implausible_value")
    reasons.extend(
        reason for status, reason in _BP_STATUS_REASON.items() if status in reading.measurement_status
    )
    if not reading.valid and not reasons:
        reasons.append("device_error")
    return reasons


def _glucose_reasons(reading: GlucoseReading) -> list[ExclusionReason]:
    if reading.valid:
        return []
    reasons: list[ExclusionReason] = []
    if (
        reading.sample_type is SampleType.CONTROL_SOLUTION
        or reading.sample_location is SampleLocation.CONTROL_SOLUTION
    ):
        reasons.append("control_solution")
    status = reading.sensor_status
    reasons.extend(reason for flag, reason in _SENSOR_REASON.items() if flag in status)
    if any(flag not in _SENSOR_REASON and flag in _INVALIDATING for flag in status):
        reasons.append("sensor_fault")
    value = reading.glucose_mg_dl
    if value is None:
        reasons.append("not_measured")
    elif not plausibility.GLUCOSE_MG_DL.contains(value):
        reasons.append("implausible_value")
    if not reasons:
        reasons.append("device_error")
    return reasons


_INVALIDATING: Final = frozenset(SensorStatus) - {SensorStatus.DEVICE_BATTERY_LOW, SensorStatus.TIME_FAULT}


class ExcludedCount(BaseModel):
    """Readings left out, counted once each under their first (most telling) reason."""

    model_config = ConfigDict(frozen=True)

    reason: ExclusionReason
    count: int


def excluded_counts(reasons: Iterable[ExclusionReason]) -> list[ExcludedCount]:
    counts = Counter(reasons)
    return [ExcludedCount(reason=r, count=counts[r]) for r in EXCLUSION_REASONS if counts[r]]
