"""Readings built from the vitals models directly, for outbox and uplink tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading

BASE_TIME = datetime(2026, 11, 1, 7, 30)


def glucose_meter(serial: str = "GL-0001") -> DeviceIdentity:
    return DeviceIdentity(manufacturer="Virtual Meters", model="VG-Glucose", serial_number=serial)


def cuff(serial: str = "BP-0001") -> DeviceIdentity:
    return DeviceIdentity(manufacturer="Virtual Meters", model="VG-Cuff", serial_number=serial)


def glucose(
    sequence_number: int, *, device: DeviceIdentity | None = None, patient_id: str | None = "patient-1"
) -> GlucoseReading:
    device = device or glucose_meter()
    base_time = BASE_TIME + timedelta(hours=sequence_number)
    return GlucoseReading(
        reading_id=glucose_reading_id(device, sequence_number, base_time),
        device=device,
        patient_id=patient_id,
        measured_at=base_time.replace(tzinfo=UTC),
        device_time=base_time,
        sequence_number=sequence_number,
        glucose=95 + sequence_number % 40,
    )


def blood_pressure(
    index: int,
    *,
    device: DeviceIdentity | None = None,
    patient_id: str | None = "patient-2",
    user_id: int = 1,
) -> BloodPressureReading:
    device = device or cuff()
    device_time = BASE_TIME + timedelta(minutes=index)
    systolic, diastolic = 120 + index % 30, 80 - index % 10
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            device,
            device_time,
            user_id,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=None,
            pulse_bpm=70,
        ),
        device=device,
        patient_id=patient_id,
        measured_at=device_time.replace(tzinfo=UTC),
        device_time=device_time,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70,
        user_id=user_id,
    )
