"""Decoded measurements become vitals readings with ids, corrected times, canonical units and validity."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from device_drivers import quirks
from device_drivers.procedures.clock import ClockReading, ClockSource
from device_drivers.procedures.results import GlucoseRecord
from device_drivers.profiles.blood_pressure import decode_blood_pressure_measurement
from device_drivers.profiles.device_information import DeviceInformation
from device_drivers.profiles.glucose import decode_glucose_measurement, decode_glucose_measurement_context
from device_drivers.readings import blood_pressure_reading, device_identity, glucose_reading
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    GlucoseReading,
    Health,
    Meal,
    SampleLocation,
    SampleType,
)
from vitals.units import GlucoseUnit, PressureUnit

BERLIN = ZoneInfo("Europe/Berlin")
RECEIVED = dt.datetime(2024, 3, 1, 7, 40, tzinfo=dt.UTC)
DEVICE = device_identity(
    DeviceInformation(manufacturer_name="A&D Medical", model_number="UA-651BLE", serial_number="5170500123"),
    address="AA:BB:CC:DD:EE:FF",
)
# The meter runs 5 minutes fast: its 08:30 is 08:25 Berlin time = 07:25 UTC.
CLOCK = ClockReading(
    ClockSource.CURRENT_TIME,
    dt.datetime(2024, 3, 1, 8, 35),
    dt.datetime(2024, 3, 1, 7, 30, tzinfo=dt.UTC),
    BERLIN,
)
BPM_WORKED_EXAMPLE = "06 78 00 50 00 5D 00 E8 07 03 01 08 1E 00 48 00"  # reference §2.2
GLUCOSE_WORKED_EXAMPLE = "02 05 00 E8 07 03 01 08 1E 00 69 B0 11"  # reference §2.3


def bp(hex_value: str) -> BloodPressureReading:
    return blood_pressure_reading(
        decode_blood_pressure_measurement(bytes.fromhex(hex_value)),
        device=DEVICE,
        clock=CLOCK,
        gateway_timezone=BERLIN,
        received_at=RECEIVED,
    )


def test_blood_pressure_reading_corrected_and_identified() -> None:
    """120/80, pulse 72; measured_at corrected by the clock offset; meter time kept; stable id."""
    reading = bp(BPM_WORKED_EXAMPLE)
    again = bp(BPM_WORKED_EXAMPLE)
    assert reading.systolic_mmhg == 120.0
    assert reading.diastolic_mmhg == 80.0
    assert reading.pulse_bpm == 72.0
    assert reading.device_time == dt.datetime(2024, 3, 1, 8, 30)
    assert reading.measured_at == dt.datetime(2024, 3, 1, 7, 25, tzinfo=dt.UTC)
    assert reading.clock_offset_s == 300.0
    assert reading.valid
    assert reading.reading_id == again.reading_id
    assert reading.raw_hex == bytes.fromhex(BPM_WORKED_EXAMPLE).hex()


def test_err_record_is_kept_invalid() -> None:
    """The derdilla 'Err' record (all NaN) becomes an invalid reading with reasons, not an exception."""
    reading = bp("16 FF 07 FF 07 FF 07 E8 07 06 17 0E 23 0A FF 07 00 00")
    assert not reading.valid
    assert "systolic is NaN" in reading.invalid_reasons
    assert reading.systolic is None


def test_kpa_status_and_user_slot() -> None:
    """kPa values keep their unit and gain mmHg; status bits map by name; user slot kept."""
    reading = bp("1F A0 F0 6B F0 7D F0 E7 07 0C 1F 17 3B 3B 40 00 02 2D 00")
    assert reading.unit is PressureUnit.KPA
    assert reading.systolic == 16.0
    assert reading.systolic_mmhg == pytest.approx(120.01, abs=0.01)
    assert reading.user_id == 2
    assert reading.measurement_status == {
        BloodPressureStatus.BODY_MOVEMENT,
        BloodPressureStatus.IRREGULAR_PULSE,
        BloodPressureStatus.IMPROPER_POSITION,
        BloodPressureStatus.PULSE_RATE_ABOVE_RANGE,
    }


def test_unknown_user_slot_is_none() -> None:
    """User ID 0xFF (unknown user) is not a slot."""
    assert bp("08 78 00 50 00 5D 00 FF").user_id is None


def glucose(
    hex_value: str,
    *,
    context_hex: str | None = None,
    meter_quirks: quirks.MeterQuirks = quirks.STANDARD,
    clock: ClockReading | None = CLOCK,
) -> GlucoseReading:
    record = GlucoseRecord(
        decode_glucose_measurement(bytes.fromhex(hex_value)),
        None if context_hex is None else decode_glucose_measurement_context(bytes.fromhex(context_hex)),
    )
    return glucose_reading(
        record, device=DEVICE, clock=clock, gateway_timezone=BERLIN, received_at=RECEIVED, quirks=meter_quirks
    )


def test_glucose_reading_mg_dl() -> None:
    """The §2.3 worked example: 105 mg/dL, capillary whole blood from a finger, sequence 5."""
    reading = glucose(GLUCOSE_WORKED_EXAMPLE)
    assert reading.unit is GlucoseUnit.MG_DL
    assert reading.glucose == 105.0
    assert reading.glucose_mg_dl == 105.0
    assert reading.sequence_number == 5
    assert reading.sample_type is SampleType.CAPILLARY_WHOLE_BLOOD
    assert reading.sample_location is SampleLocation.FINGER
    assert reading.measured_at == dt.datetime(2024, 3, 1, 7, 25, tzinfo=dt.UTC)


def test_glucose_reading_mmol_l_keeps_native_unit() -> None:
    """5.8 mmol/L stays 5.8 mmol/L and gains mg/dL with 18.01559 (DESIGN.md)."""
    reading = glucose("06 07 00 E8 07 03 01 08 1E 00 3A C0 12")
    assert reading.unit is GlucoseUnit.MMOL_L
    assert reading.glucose == pytest.approx(5.8)
    assert reading.glucose_mg_dl == pytest.approx(5.8 * 18.01559)


def test_control_solution_is_invalid() -> None:
    """Control-solution records are kept but never count as a patient value."""
    reading = glucose("02 08 00 E8 07 03 01 08 1E 00 69 B0 4A")
    assert not reading.valid


def test_context_in_clinical_units() -> None:
    """Context: carbs in grams, medication in mL, meal, tester/health mapped by code."""
    reading = glucose(
        "12 05 00 E8 07 03 01 08 1E 00 69 B0 11",
        context_hex="FF 05 00 00 01 32 D0 01 51 08 07 32 01 02 B0 41 F0",
    )
    context = reading.context
    assert context is not None
    assert context.carbohydrate_grams == 50.0
    assert context.medication_unit == "mL"
    assert context.medication_amount == pytest.approx(0.02)
    assert context.meal is Meal.PREPRANDIAL
    assert context.health is Health.NO_ISSUES
    assert context.hba1c_percent == 6.5


def test_taidoc_ids_ignore_renumbering() -> None:
    """TaiDoc renumbers records (0 = newest): the same record keeps its id when its number changes."""
    first = glucose("02 00 00 E8 07 03 01 08 1E 00 69 B0 11", meter_quirks=quirks.TAIDOC, clock=None)
    renumbered = glucose("02 01 00 E8 07 03 01 08 1E 00 69 B0 11", meter_quirks=quirks.TAIDOC, clock=None)
    assert first.reading_id == renumbered.reading_id
    standard_a = glucose("02 00 00 E8 07 03 01 08 1E 00 69 B0 11")
    standard_b = glucose("02 01 00 E8 07 03 01 08 1E 00 69 B0 11")
    assert standard_a.reading_id != standard_b.reading_id
    # No clock access: the meter's wall clock is taken as gateway local time (08:30 Berlin = 07:30 UTC).
    assert first.measured_at == dt.datetime(2024, 3, 1, 7, 30, tzinfo=dt.UTC)
