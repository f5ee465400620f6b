"""Hand-made readings for the reading store contract tests (values chosen to be hand-computable)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.readings import AnyReading
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Meal,
    SampleLocation,
    SampleType,
    SensorStatus,
    Tester,
)
from vitals.units import GlucoseUnit, PressureUnit, mmhg_to_kpa

CUFF = DeviceIdentity(
    manufacturer="Acme Medical", model="BP-7", serial_number="SN123", firmware_revision="1.2"
)
METER = DeviceIdentity(manufacturer="Acme Medical", model="GL-2", address="c0:ff:ee:00:00:01")


def bp(
    patient_id: str | None,
    measured_at: datetime,
    systolic: float,
    diastolic: float,
    *,
    pulse_bpm: float | None = 70.0,
    unit: PressureUnit = PressureUnit.MMHG,
    status: frozenset[BloodPressureStatus] = frozenset(),
    user_id: int | None = 1,
    raw_hex: str | None = "1e7800500000",
) -> BloodPressureReading:
    device_time = measured_at.replace(tzinfo=None) + timedelta(minutes=3)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            CUFF,
            device_time,
            user_id,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=None,
            pulse_bpm=pulse_bpm,
        ),
        device=CUFF,
        patient_id=patient_id,
        measured_at=measured_at,
        device_time=device_time,
        clock_offset_s=180.0,
        received_at=measured_at + timedelta(seconds=42),
        unit=unit,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=pulse_bpm,
        user_id=user_id,
        measurement_status=status,
        raw_hex=raw_hex,
    )


def glucose(
    patient_id: str | None,
    measured_at: datetime,
    value: float,
    *,
    sequence_number: int,
    unit: GlucoseUnit = GlucoseUnit.MG_DL,
    sample_type: SampleType = SampleType.CAPILLARY_PLASMA,
    sensor_status: frozenset[SensorStatus] = frozenset(),
    context: GlucoseContext | None = None,
) -> GlucoseReading:
    base_time = measured_at.replace(tzinfo=None)
    return GlucoseReading(
        reading_id=glucose_reading_id(METER, sequence_number, base_time),
        device=METER,
        patient_id=patient_id,
        measured_at=measured_at,
        device_time=base_time,
        received_at=measured_at + timedelta(minutes=10),
        sequence_number=sequence_number,
        unit=unit,
        glucose=value,
        sample_type=sample_type,
        sample_location=SampleLocation.FINGER,
        sensor_status=sensor_status,
        context=context,
        raw_hex="0b0100e4070b17",
    )


T0 = datetime(2026, 3, 10, 7, 30, 0, tzinfo=UTC)


def every_field_readings(patient_id: str) -> list[AnyReading]:
    """One of each shape: mmHg and kPa cuffs, flagged and invalid BP, mg/dL and mmol/L glucose with
    context, a control-solution test, a sensor fault, a cuff that sent no pulse and no raw bytes."""
    return [
        bp(patient_id, T0, 128.0, 82.0, pulse_bpm=66.0),
        bp(patient_id, T0 + timedelta(hours=1), round(mmhg_to_kpa(140.0), 1), 12.0, unit=PressureUnit.KPA),
        bp(
            patient_id,
            T0 + timedelta(hours=2),
            150.0,
            95.0,
            status=frozenset({BloodPressureStatus.BODY_MOVEMENT, BloodPressureStatus.IRREGULAR_PULSE}),
        ),
        bp(patient_id, T0 + timedelta(hours=3), 90.0, 95.0),  # diastolic >= systolic: invalid
        bp(
            patient_id,
            T0 + timedelta(hours=4, microseconds=123456),
            118.0,
            76.0,
            pulse_bpm=None,
            raw_hex=None,
        ),
        glucose(patient_id, T0, 104.0, sequence_number=1),
        glucose(
            patient_id,
            T0 + timedelta(hours=1),
            7.2,
            sequence_number=2,
            unit=GlucoseUnit.MMOL_L,
            context=GlucoseContext(meal=Meal.POSTPRANDIAL, tester=Tester.SELF, carbohydrate_grams=45.5),
        ),
        glucose(
            patient_id,
            T0 + timedelta(hours=2),
            99.0,
            sequence_number=3,
            sample_type=SampleType.CONTROL_SOLUTION,
        ),
        glucose(
            patient_id,
            T0 + timedelta(hours=3),
            250.0,
            sequence_number=4,
            sensor_status=frozenset({SensorStatus.SENSOR_MALFUNCTION, SensorStatus.DEVICE_BATTERY_LOW}),
        ),
    ]
