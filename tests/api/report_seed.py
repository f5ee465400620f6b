"""Readings, alerts and targets of patients with known data, for the report and exchange tests.

`meter_patient` is a patient with home meters in Shanghai: duplicate morning and evening cuff readings
for 8 days with a cuff error, a 0/0, a body-movement reading and no pulse on one reading; finger-stick
glucose four times a day for 14 days in mmol/L with meal contexts, a control-solution test, a "HI"
result and two lows; an alert acknowledged and resolved with a note, and one open; targets set by the
family doctor. `cgm_patient` has 14 days of readings every 15 minutes (the AGP's sufficiency).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from storage.clinic.models import Alert, AlertEventRecord
from storage.clinic.models import PatientTargets as TargetsRow
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.payload import AlertSeverity, AlertState
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
)
from vitals.units import GlucoseUnit

SHANGHAI = ZoneInfo("Asia/Shanghai")


def cuff(patient_id: str) -> DeviceIdentity:
    """The patient's own cuff (two patients' identical readings at one time stay two readings)."""
    return DeviceIdentity(
        manufacturer="Acme", model="BP-1", serial_number=f"SN-CUFF-{patient_id}", firmware_revision="1.2"
    )


def meter(patient_id: str) -> DeviceIdentity:
    return DeviceIdentity(manufacturer="Acme", model="GL-1", serial_number=f"SN-GLU-{patient_id}")


SENSOR = DeviceIdentity(manufacturer="Acme", model="CGM-1", address="AA:BB:CC:DD:EE:01")
_numbers = itertools.count(1)

AnyReading = BloodPressureReading | GlucoseReading


def bp(
    patient_id: str, at: datetime, systolic: float, diastolic: float, **extra: object
) -> BloodPressureReading:
    device_time = at.astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0)
    pulse = extra.pop("pulse_bpm", 70.0)
    device = cuff(patient_id)
    return BloodPressureReading.model_validate(
        {
            "reading_id": blood_pressure_reading_id(
                device,
                device_time,
                1,
                systolic=systolic,
                diastolic=diastolic,
                mean_arterial=None,
                pulse_bpm=pulse,
            ),
            "device": device,
            "patient_id": patient_id,
            "measured_at": at,
            "device_time": device_time,
            "received_at": at + timedelta(seconds=40),
            "systolic": systolic,
            "diastolic": diastolic,
            "pulse_bpm": pulse,
            "user_id": 1,
            "raw_hex": "1e0000",
            **extra,
        }
    )


def glucose(
    patient_id: str,
    at: datetime,
    value: float | None,
    *,
    device: DeviceIdentity | None = None,
    unit: GlucoseUnit = GlucoseUnit.MMOL_L,
    **extra: object,
) -> GlucoseReading:
    number = next(_numbers)
    device = device or meter(patient_id)
    return GlucoseReading.model_validate(
        {
            "reading_id": glucose_reading_id(device, number, at.replace(tzinfo=None)),
            "device": device,
            "patient_id": patient_id,
            "measured_at": at,
            "sequence_number": number,
            "unit": unit,
            "glucose": value,
            **extra,
        }
    )


def local(day: datetime, hour: int, minute: int = 0) -> datetime:
    """`hour:minute` Shanghai time on `day`'s local date, as UTC."""
    return datetime.combine(day.astimezone(SHANGHAI).date(), time(hour, minute), tzinfo=SHANGHAI).astimezone(
        UTC
    )


def meter_patient_readings(patient_id: str, now: datetime) -> list[AnyReading]:
    """The home-meter patient's readings, all in the past of `now` (module doc)."""
    out: list[AnyReading] = []
    for n in range(1, 9):  # yesterday back to 8 days ago: 8 local days
        day = now - timedelta(days=n)
        for hour, minute, systolic, diastolic in (
            (7, 0, 138 + n, 86),
            (7, 2, 134 + n, 84),
            (20, 0, 126, 78),
            (20, 2, 124, 77),
        ):
            out.append(bp(patient_id, local(day, hour, minute), float(systolic), float(diastolic)))
    two = now - timedelta(days=2)
    out.append(bp(patient_id, local(two, 12), float("nan"), float("nan")))  # the cuff's "Err"
    out.append(bp(patient_id, local(two, 13), 0.0, 0.0))  # implausible 0/0
    out.append(
        bp(
            patient_id,
            local(two, 14),
            182.0,
            101.0,
            measurement_status=frozenset({BloodPressureStatus.BODY_MOVEMENT}),
        )
    )
    out.append(bp(patient_id, local(now - timedelta(days=3), 12), 130.0, 80.0, pulse_bpm=None))
    meals = (
        (7, Meal.FASTING, 6.4),
        (9, Meal.POSTPRANDIAL, 9.1),
        (17, Meal.PREPRANDIAL, 6.0),
        (22, Meal.BEDTIME, 7.3),
    )
    for n in range(1, 15):
        day = now - timedelta(days=n)
        for hour, meal, value in meals:
            shift = 0.1 * (n % 5)
            out.append(
                glucose(
                    patient_id,
                    local(day, hour),
                    round(value + shift, 1),
                    sample_type=SampleType.CAPILLARY_WHOLE_BLOOD,
                    sample_location=SampleLocation.FINGER,
                    context=GlucoseContext(meal=meal),
                )
            )
    four = now - timedelta(days=4)
    out.append(glucose(patient_id, local(four, 3), 3.4, sample_location=SampleLocation.FINGER))  # level 1
    out.append(glucose(patient_id, local(now - timedelta(days=6), 3), 2.8))  # level 2, no context
    out.append(glucose(patient_id, local(four, 11), 5.5, sample_type=SampleType.CONTROL_SOLUTION))
    out.append(
        glucose(patient_id, local(four, 12), None, sensor_status=frozenset({SensorStatus.RESULT_TOO_HIGH}))
    )
    return out


def cgm_patient_readings(patient_id: str, now: datetime) -> list[AnyReading]:
    """14 full local days of readings every 15 minutes (mg/dL), a daily curve."""
    out: list[AnyReading] = []
    first = local(now - timedelta(days=14), 0)
    for i in range(14 * 96):
        at = first + timedelta(minutes=15 * i)
        hour = (i % 96) / 4
        value = 130 + 50 * math.sin((hour - 8) / 24 * 2 * math.pi) + (i % 7)
        out.append(glucose(patient_id, at, round(value), device=SENSOR, unit=GlucoseUnit.MG_DL))
    return out


def set_targets(session: Session, patient_id: str, by: str, at: datetime) -> None:
    session.add(
        TargetsRow(
            patient_id=patient_id,
            bp_goal_systolic_mmhg=130.0,
            bp_goal_diastolic_mmhg=80.0,
            timezone="Asia/Shanghai",
            updated_by=by,
            updated_at=at,
        )
    )


def add_alerts(session: Session, patient_id: str, clinic_id: str, doctor: str, now: datetime) -> None:
    """One BP-CTRL-1 alert acknowledged then resolved with a note by `doctor`, one GLU-HYPO-2 open."""
    opened = now - timedelta(days=3)
    session.add(
        Alert(
            alert_id="al-ctrl",
            patient_id=patient_id,
            clinic_id=clinic_id,
            rule_id="BP-CTRL-1",
            severity=AlertSeverity.WARNING,
            state=AlertState.RESOLVED,
            opened_at=opened,
            updated_at=opened + timedelta(hours=5),
            acknowledged_at=opened + timedelta(hours=1),
            acknowledged_by=doctor,
            resolved_at=opened + timedelta(hours=5),
            resolved_by=doctor,
            resolution_note="amlodipine increased",
        )
    )
    session.add(
        Alert(
            alert_id="al-hypo",
            patient_id=patient_id,
            clinic_id=clinic_id,
            rule_id="GLU-HYPO-2",
            severity=AlertSeverity.URGENT,
            state=AlertState.OPEN,
            opened_at=now - timedelta(days=6),
            updated_at=now - timedelta(days=6),
        )
    )
    session.flush()
    events: Sequence[tuple[str, datetime, str, str, AlertState, dict[str, object]]] = (
        ("al-ctrl", opened, "system", "opened", AlertState.OPEN, {}),
        ("al-ctrl", opened + timedelta(hours=1), doctor, "acknowledged", AlertState.ACKNOWLEDGED, {}),
        (
            "al-ctrl",
            opened + timedelta(hours=5),
            doctor,
            "resolved",
            AlertState.RESOLVED,
            {"note": "amlodipine increased"},
        ),
        ("al-hypo", now - timedelta(days=6), "system", "opened", AlertState.OPEN, {}),
    )
    for alert_id, at, actor, event, state, details in events:
        session.add(
            AlertEventRecord(
                alert_id=alert_id, at=at, actor=actor, event=event, to_state=state, details=details
            )
        )
