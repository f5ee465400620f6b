"""Decoded measurements -> vitals reading models (patient-agnostic: the gateway binds patients).

Each reading keeps the meter's own timestamp (``device_time``) beside the corrected UTC time
(``measured_at``), the clock offset used, validity with reasons, and the raw bytes (DESIGN.md,
Storage). Ids come from :mod:`vitals.identity`, so the same record gets the same id on every sync:
glucose by sequence number + base time; blood pressure by cuff time + user slot (values when the
cuff sends no time). TaiDoc-like meters renumber their records on every new one (0 = newest,
reference §2.7), so their glucose ids use base time only (sequence number 0 in the key).

Clock correction: with a clock reading, ``measured_at = ClockReading.correct(device_time)``; with
none (no clock access, TaiDoc), the meter's wall clock is taken as the gateway's local time; with
no device time at all, ``measured_at`` is the time the gateway received the record.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Literal

from device_drivers.procedures.clock import ClockReading
from device_drivers.procedures.results import GlucoseRecord
from device_drivers.profiles import blood_pressure as bp
from device_drivers.profiles import glucose as gl
from device_drivers.profiles.device_information import DeviceInformation
from device_drivers.profiles.ieee11073 import MderFloat
from device_drivers.quirks import STANDARD, MeterQuirks
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    CarbohydrateId,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Health,
    Meal,
    MedicationId,
    SampleLocation,
    SampleType,
    SensorStatus,
    Tester,
)
from vitals.units import GlucoseUnit, PressureUnit

logger = logging.getLogger(__name__)

UNKNOWN_TEXT = "unknown"
GRAMS_PER_KILOGRAM = 1000
MILLIGRAMS_PER_KILOGRAM = 1_000_000
MILLILITRES_PER_LITRE = 1000
MAX_EXERCISE_INTENSITY_PERCENT = 100

_BP_STATUS = {
    bp.MeasurementStatusFlag.BODY_MOVEMENT_DETECTED: BloodPressureStatus.BODY_MOVEMENT,
    bp.MeasurementStatusFlag.CUFF_TOO_LOOSE: BloodPressureStatus.CUFF_TOO_LOOSE,
    bp.MeasurementStatusFlag.IRREGULAR_PULSE_DETECTED: BloodPressureStatus.IRREGULAR_PULSE,
    bp.MeasurementStatusFlag.IMPROPER_MEASUREMENT_POSITION: BloodPressureStatus.IMPROPER_POSITION,
}
_PULSE_RANGE = {
    bp.PulseRateRange.EXCEEDS_UPPER_LIMIT: BloodPressureStatus.PULSE_RATE_ABOVE_RANGE,
    bp.PulseRateRange.BELOW_LOWER_LIMIT: BloodPressureStatus.PULSE_RATE_BELOW_RANGE,
}
_SENSOR_STATUS = {
    gl.SensorStatusFlag.DEVICE_BATTERY_LOW: SensorStatus.DEVICE_BATTERY_LOW,
    gl.SensorStatusFlag.SENSOR_MALFUNCTION: SensorStatus.SENSOR_MALFUNCTION,
    gl.SensorStatusFlag.SAMPLE_SIZE_INSUFFICIENT: SensorStatus.SAMPLE_SIZE_INSUFFICIENT,
    gl.SensorStatusFlag.STRIP_INSERTION_ERROR: SensorStatus.STRIP_INSERTION_ERROR,
    gl.SensorStatusFlag.STRIP_TYPE_INCORRECT: SensorStatus.STRIP_TYPE_INCORRECT,
    gl.SensorStatusFlag.RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS: SensorStatus.RESULT_TOO_HIGH,
    gl.SensorStatusFlag.RESULT_LOWER_THAN_DEVICE_CAN_PROCESS: SensorStatus.RESULT_TOO_LOW,
    gl.SensorStatusFlag.SENSOR_TEMPERATURE_TOO_HIGH: SensorStatus.SENSOR_TEMPERATURE_TOO_HIGH,
    gl.SensorStatusFlag.SENSOR_TEMPERATURE_TOO_LOW: SensorStatus.SENSOR_TEMPERATURE_TOO_LOW,
    gl.SensorStatusFlag.SENSOR_READ_INTERRUPTED: SensorStatus.SENSOR_READ_INTERRUPTED,
    gl.SensorStatusFlag.GENERAL_DEVICE_FAULT: SensorStatus.GENERAL_DEVICE_FAULT,
    gl.SensorStatusFlag.TIME_FAULT: SensorStatus.TIME_FAULT,
}
_SAMPLE_TYPE = {int(member): SampleType(member.name.lower()) for member in gl.GlucoseSampleType}
_SAMPLE_LOCATION = {int(member): SampleLocation(member.name.lower()) for member in gl.GlucoseSampleLocation}
_MEAL = {int(member): Meal(member.name.lower()) for member in gl.MealCode}
_TESTER = {int(member): Tester(member.name.lower()) for member in gl.TesterCode}
_HEALTH = {
    1: Health.MINOR_ISSUES,
    2: Health.MAJOR_ISSUES,
    3: Health.DURING_MENSES,
    4: Health.UNDER_STRESS,
    5: Health.NO_ISSUES,
    15: Health.NOT_AVAILABLE,
}
_CARBOHYDRATE = {int(member): CarbohydrateId(member.name.lower()) for member in gl.CarbohydrateCode}
_MEDICATION = {int(member): MedicationId(member.name.lower()) for member in gl.MedicationCode}


def device_identity(information: DeviceInformation, *, address: str | None) -> DeviceIdentity:
    """The vitals DeviceIdentity of a meter from its DIS strings and BLE address."""
    return DeviceIdentity(
        manufacturer=(information.manufacturer_name or UNKNOWN_TEXT)[:64] or UNKNOWN_TEXT,
        model=(information.model_number or UNKNOWN_TEXT)[:64] or UNKNOWN_TEXT,
        serial_number=(information.serial_number or None) and information.serial_number[:64],
        address=address,
        firmware_revision=(information.firmware_revision or None) and information.firmware_revision[:64],
    )


def _float(value: MderFloat | Decimal | None) -> float | None:
    if isinstance(value, MderFloat):
        value = value.to_decimal()
    return None if value is None else float(value)


def _measured_at(
    device_time: dt.datetime | None,
    clock: ClockReading | None,
    gateway_timezone: dt.tzinfo,
    received_at: dt.datetime,
) -> dt.datetime:
    if device_time is None:
        return received_at.astimezone(dt.UTC)
    try:
        if clock is not None:
            return clock.correct(device_time)
        return device_time.replace(tzinfo=gateway_timezone).astimezone(dt.UTC)
    except OverflowError:
        # A meter clock near year 1 or 9999 cannot be corrected; the meter's own time is kept in
        # device_time and the receipt time stands in.
        logger.warning("meter timestamp cannot be corrected", extra={"device_time": device_time.isoformat()})
        return received_at.astimezone(dt.UTC)


def _offset_s(clock: ClockReading | None) -> float | None:
    return None if clock is None else clock.offset.total_seconds()


def cuff_device_time(
    measurement: bp.BloodPressureMeasurement | bp.EnhancedBloodPressureMeasurement,
) -> dt.datetime | None:
    """The cuff's own time of a measurement (naive): its time stamp, or for the BLS 1.1 form the
    user facing time when present, else the UTC time stamp."""
    if isinstance(measurement, bp.BloodPressureMeasurement):
        return None if measurement.timestamp is None else measurement.timestamp.to_datetime()
    if measurement.user_facing_time is not None:
        return measurement.user_facing_time
    return measurement.time_stamp


def _cuff_times(
    measurement: bp.BloodPressureMeasurement | bp.EnhancedBloodPressureMeasurement,
    clock: ClockReading | None,
    gateway_timezone: dt.tzinfo,
    received_at: dt.datetime,
) -> tuple[dt.datetime | None, dt.datetime]:
    """The cuff's own time of a measurement and its corrected UTC time.

    BLS 1.0 stamps the cuff's wall clock (Date Time). The BLS 1.1 enhanced form carries a UTC Time
    Stamp and a User Facing Time (local), both counted on the cuff's clock (GATT Specification
    Supplement, enhanced_blood_pressure_measurement): the user facing time is the wall clock and is
    corrected like a BLS 1.0 time stamp; a UTC time stamp alone is corrected by the clock offset.
    """
    device_time = cuff_device_time(measurement)
    if isinstance(measurement, bp.BloodPressureMeasurement) or measurement.user_facing_time is not None:
        return device_time, _measured_at(device_time, clock, gateway_timezone, received_at)
    if device_time is None:
        return None, received_at.astimezone(dt.UTC)
    offset = dt.timedelta(0) if clock is None else clock.offset
    try:
        return device_time, (device_time - offset).replace(tzinfo=dt.UTC)
    except OverflowError:
        return device_time, received_at.astimezone(dt.UTC)


def blood_pressure_reading(
    measurement: bp.BloodPressureMeasurement | bp.EnhancedBloodPressureMeasurement,
    *,
    device: DeviceIdentity,
    clock: ClockReading | None,
    gateway_timezone: dt.tzinfo,
    received_at: dt.datetime,
) -> BloodPressureReading:
    """A cuff measurement (BLS 1.0, or its BLS 1.1 enhanced form) as a vitals BloodPressureReading
    (user slot 0xFF = unknown becomes None)."""
    device_time, measured_at = _cuff_times(measurement, clock, gateway_timezone, received_at)
    systolic = _float(measurement.systolic)
    diastolic = _float(measurement.diastolic)
    mean = _float(measurement.mean_arterial_pressure)
    pulse = _float(measurement.pulse_rate_bpm)
    user_id = None if measurement.user_id in (None, bp.USER_ID_UNKNOWN) else measurement.user_id
    status: set[BloodPressureStatus] = set()
    if measurement.measurement_status is not None:
        status = {name for flag, name in _BP_STATUS.items() if flag in measurement.measurement_status.flags}
        pulse_range = _PULSE_RANGE.get(measurement.measurement_status.pulse_rate_range)
        if pulse_range is not None:
            status.add(pulse_range)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            device,
            device_time,
            user_id,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=mean,
            pulse_bpm=pulse,
        ),
        device=device,
        measured_at=measured_at,
        device_time=device_time,
        clock_offset_s=_offset_s(clock),
        received_at=received_at,
        valid=measurement.valid,
        invalid_reasons=measurement.invalid_reasons,
        raw_hex=measurement.raw.hex(),
        unit=PressureUnit.KPA if measurement.unit is bp.MeasurementPressureUnit.KPA else PressureUnit.MMHG,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial=mean,
        pulse_bpm=pulse,
        user_id=user_id,
        measurement_status=frozenset(status),
    )


def _context(context: gl.GlucoseMeasurementContext | None) -> GlucoseContext | None:
    if context is None:
        return None
    medication_amount: float | None = None
    medication_unit: Literal["mg", "mL"] | None = None
    medication = None if context.medication is None else context.medication.to_decimal()
    if medication is not None:
        if context.medication_unit is gl.MedicationUnit.LITRES:
            medication_amount, medication_unit = float(medication * MILLILITRES_PER_LITRE), "mL"
        else:
            medication_amount, medication_unit = float(medication * MILLIGRAMS_PER_KILOGRAM), "mg"
    carbohydrate_kg = None if context.carbohydrate_kg is None else context.carbohydrate_kg.to_decimal()
    carbohydrate = None if carbohydrate_kg is None else float(carbohydrate_kg * GRAMS_PER_KILOGRAM)
    intensity = context.exercise_intensity_percent
    if intensity is not None and intensity > MAX_EXERCISE_INTENSITY_PERCENT:
        logger.info(
            "exercise intensity above 100 % dropped", extra={"sequence_number": context.sequence_number}
        )
        intensity = None
    return GlucoseContext(
        meal=None if context.meal is None else _MEAL.get(int(context.meal)),
        tester=None if context.tester is None else _TESTER.get(int(context.tester)),
        health=None if context.health is None else _HEALTH.get(int(context.health)),
        carbohydrate_id=None
        if context.carbohydrate_id is None
        else _CARBOHYDRATE.get(int(context.carbohydrate_id)),
        carbohydrate_grams=carbohydrate,
        exercise_duration_s=context.exercise_duration_seconds,
        exercise_intensity_percent=intensity,
        medication_id=None if context.medication_id is None else _MEDICATION.get(int(context.medication_id)),
        medication_amount=medication_amount,
        medication_unit=medication_unit,
        hba1c_percent=_float(context.hba1c_percent),
    )


def glucose_reading(
    record: GlucoseRecord,
    *,
    device: DeviceIdentity,
    clock: ClockReading | None,
    gateway_timezone: dt.tzinfo,
    received_at: dt.datetime,
    quirks: MeterQuirks = STANDARD,
) -> GlucoseReading:
    """A glucose record (measurement + context) as a vitals GlucoseReading."""
    measurement = record.measurement
    device_time = measurement.user_facing_time
    if measurement.unit is gl.GlucoseConcentrationUnit.MOL_PER_L:
        unit, value = GlucoseUnit.MMOL_L, _float(measurement.glucose_mmol_l)
    else:
        unit, value = GlucoseUnit.MG_DL, _float(measurement.glucose_mg_dl)
    id_sequence_number = 0 if quirks.sequence_numbers_reversed else measurement.sequence_number
    sensor_status = frozenset(
        name
        for flag, name in _SENSOR_STATUS.items()
        if measurement.sensor_status is not None and flag in measurement.sensor_status
    )
    return GlucoseReading(
        reading_id=glucose_reading_id(device, id_sequence_number, measurement.base_time.to_datetime()),
        device=device,
        measured_at=_measured_at(device_time, clock, gateway_timezone, received_at),
        device_time=device_time,
        clock_offset_s=_offset_s(clock),
        received_at=received_at,
        valid=measurement.valid,
        invalid_reasons=measurement.invalid_reasons,
        raw_hex=measurement.raw.hex(),
        sequence_number=measurement.sequence_number,
        unit=unit,
        glucose=value,
        sample_type=None
        if measurement.sample_type is None
        else _SAMPLE_TYPE.get(int(measurement.sample_type)),
        sample_location=(
            None
            if measurement.sample_location is None
            else _SAMPLE_LOCATION.get(int(measurement.sample_location))
        ),
        sensor_status=sensor_status,
        context=_context(record.context),
    )
