"""The shared vocabulary: conversions, canonical values, validity and reading identity."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    GlucoseReading,
    SensorStatus,
)
from vitals.units import (
    GlucoseUnit,
    PressureUnit,
    display_glucose,
    glucose_to_mg_dl,
    mg_dl_to_mmol_l,
    pressure_to_mmhg,
)

CUFF = DeviceIdentity(manufacturer="OMRON HEALTHCARE", model="HEM-7155T", serial_number="20230001")
METER = DeviceIdentity(manufacturer="Roche", model="Accu-Chek Guide", address="c0:26:da:01:02:03")
T0 = datetime(2024, 3, 1, 8, 30, tzinfo=UTC)


def bp(**fields: object) -> BloodPressureReading:
    base: dict[str, object] = {
        "reading_id": "0" * 32,
        "device": CUFF,
        "measured_at": T0,
        "systolic": 120,
        "diastolic": 80,
        "mean_arterial": 93,
        "pulse_bpm": 72,
    }
    base.update(fields)
    return BloodPressureReading.model_validate(base)


def glucose(**fields: object) -> GlucoseReading:
    base: dict[str, object] = {
        "reading_id": "1" * 32,
        "device": METER,
        "measured_at": T0,
        "sequence_number": 5,
        "glucose": 105,
    }
    base.update(fields)
    return GlucoseReading.model_validate(base)


def test_glucose_conversion_uses_tidepool_factor() -> None:
    # ble-health-profiles.md Part 3: 10.0 mmol/L = 180.16 mg/dL with 18.01559 (Tidepool).
    assert glucose_to_mg_dl(10.0, GlucoseUnit.MMOL_L) == pytest.approx(180.1559)
    assert mg_dl_to_mmol_l(180.1559) == pytest.approx(10.0)
    assert display_glucose(104.49, GlucoseUnit.MMOL_L) == "5.8 mmol/L"
    assert display_glucose(104.49, GlucoseUnit.MG_DL) == "104 mg/dL"


def test_kpa_cuff_keeps_native_value_and_gets_canonical_mmhg() -> None:
    # 1 kPa = 7.50062 mmHg (ble-health-profiles.md Part 3).
    reading = bp(unit="kPa", systolic=16.0, diastolic=10.7, mean_arterial=12.4)
    assert reading.systolic == 16.0
    assert reading.systolic_mmhg == pytest.approx(120.01, abs=0.01)
    assert reading.diastolic_mmhg == pytest.approx(pressure_to_mmhg(10.7, PressureUnit.KPA))


def test_canonical_value_that_contradicts_native_is_refused() -> None:
    with pytest.raises(ValidationError, match="systolic_mmhg does not match"):
        bp(systolic_mmhg=150)


def test_nan_values_make_an_invalid_reading_that_keeps_its_raw_bytes() -> None:
    # The derdilla "Err" record (ble-health-profiles.md §2.2): all values NaN.
    raw = "16ff07ff07ff07e80706170e230aff070000"
    reading = bp(
        systolic=math.nan, diastolic=math.nan, mean_arterial=math.nan, pulse_bpm=math.nan, raw_hex=raw
    )
    assert reading.valid is False
    assert "systolic_mmhg: not measured" in reading.invalid_reasons
    assert reading.raw_hex == raw
    assert reading.systolic is None and reading.pulse_bpm is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"systolic": 301}, "systolic_mmhg: 301 mmHg above plausible maximum 300"),
        ({"systolic": 39}, "below plausible minimum 40"),
        ({"diastolic": 125, "systolic": 120}, "diastolic_mmhg: not below systolic_mmhg"),
        ({"pulse_bpm": 251}, "pulse_bpm: 251 bpm above plausible maximum 250"),
    ],
)
def test_implausible_blood_pressure_is_marked_invalid(fields: dict[str, object], reason: str) -> None:
    reading = bp(**fields)
    assert reading.valid is False
    assert any(reason in r for r in reading.invalid_reasons)


def test_plausible_edges_stay_valid() -> None:
    assert bp(systolic=300, diastolic=200, mean_arterial=None, pulse_bpm=250).valid
    assert bp(systolic=40, diastolic=20, mean_arterial=None, pulse_bpm=20).valid


def test_cuff_status_flags_exclude_from_averages_but_irregular_pulse_does_not() -> None:
    assert bp(measurement_status={BloodPressureStatus.BODY_MOVEMENT}).excluded_from_averages
    assert bp(measurement_status={BloodPressureStatus.CUFF_TOO_LOOSE}).excluded_from_averages
    assert not bp(measurement_status={BloodPressureStatus.IRREGULAR_PULSE}).excluded_from_averages


def test_glucose_in_mmol_per_litre_keeps_native_and_canonical() -> None:
    reading = glucose(glucose=5.8, unit="mmol/L")
    assert reading.glucose == 5.8
    assert reading.glucose_mg_dl == pytest.approx(104.49, abs=0.01)
    assert reading.valid


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"sample_type": "control_solution"}, "control solution"),
        ({"sample_location": "control_solution"}, "control solution"),
        ({"sensor_status": {SensorStatus.RESULT_TOO_HIGH}}, "sensor_status: result_too_high"),
        ({"glucose": 9}, "below plausible minimum 10"),
        ({"glucose": None}, "glucose_mg_dl: not measured"),
    ],
)
def test_invalid_glucose_records(fields: dict[str, object], reason: str) -> None:
    reading = glucose(**fields)
    assert reading.valid is False
    assert any(reason in r for r in reading.invalid_reasons)


def test_low_battery_annunciation_does_not_invalidate_the_value() -> None:
    assert glucose(sensor_status={SensorStatus.DEVICE_BATTERY_LOW}).valid


def test_times_are_stored_in_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    reading = bp(measured_at=datetime(2024, 3, 1, 16, 30, tzinfo=beijing))
    assert reading.measured_at == T0 and reading.measured_at.tzinfo == UTC


def test_naive_measured_at_is_refused() -> None:
    with pytest.raises(ValidationError):
        bp(measured_at=datetime(2024, 3, 1, 8, 30))


def test_device_needs_serial_or_address() -> None:
    with pytest.raises(ValidationError, match="serial_number or an address"):
        DeviceIdentity(manufacturer="A&D", model="UA-651BLE")


class TestReadingId:
    def test_same_record_same_id_whatever_the_spelling_of_the_device_strings(self) -> None:
        other_spelling = DeviceIdentity(
            manufacturer="  omron healthcare ", model="hem-7155t", serial_number="20230001"
        )
        t = datetime(2024, 3, 1, 8, 30)
        a = blood_pressure_reading_id(CUFF, t, 1, systolic=120, diastolic=80, mean_arterial=93, pulse_bpm=72)
        b = blood_pressure_reading_id(
            other_spelling, t, 1, systolic=0, diastolic=0, mean_arterial=0, pulse_bpm=0
        )
        assert a == b  # time + slot identify a timed cuff record, not the values

    def test_user_slot_and_time_distinguish_cuff_records(self) -> None:
        t = datetime(2024, 3, 1, 8, 30)
        kw = {"systolic": 120.0, "diastolic": 80.0, "mean_arterial": 93.0, "pulse_bpm": 72.0}
        ids = {
            blood_pressure_reading_id(CUFF, t, 1, **kw),
            blood_pressure_reading_id(CUFF, t, 2, **kw),
            blood_pressure_reading_id(CUFF, t + timedelta(minutes=1), 1, **kw),
        }
        assert len(ids) == 3

    def test_cuff_without_clock_is_identified_by_values(self) -> None:
        kw = {"diastolic": 80.0, "mean_arterial": 93.0, "pulse_bpm": 72.0}
        a = blood_pressure_reading_id(CUFF, None, None, systolic=120.0, **kw)
        assert a == blood_pressure_reading_id(CUFF, None, None, systolic=120.0, **kw)
        assert a != blood_pressure_reading_id(CUFF, None, None, systolic=121.0, **kw)

    def test_glucose_id_depends_on_meter_sequence_and_base_time(self) -> None:
        t = datetime(2024, 3, 1, 8, 30)
        a = glucose_reading_id(METER, 5, t)
        assert a == glucose_reading_id(METER, 5, t)
        assert a != glucose_reading_id(METER, 6, t)
        # A meter that reset its sequence numbers: same number, different base time, different reading.
        assert a != glucose_reading_id(METER, 5, t + timedelta(days=30))
        other_meter = DeviceIdentity(
            manufacturer="Roche", model="Accu-Chek Guide", address="c0:26:da:01:02:04"
        )
        assert a != glucose_reading_id(other_meter, 5, t)


def test_derived_canonical_values_travel_in_json_even_when_only_natives_were_given() -> None:
    # The gateway sends native values; the clinic must receive canonical ones too (DESIGN.md, Storage),
    # also through `exclude_unset` dumps.
    reading = bp(unit="kPa", systolic=16.0, diastolic=10.7, mean_arterial=None)
    assert {"systolic_mmhg", "diastolic_mmhg"} <= reading.model_fields_set
    dumped = reading.model_dump(exclude_unset=True)
    assert dumped["systolic_mmhg"] == pytest.approx(120.01, abs=0.01)
    again = BloodPressureReading.model_validate_json(reading.model_dump_json())
    assert again == reading
    sugar = glucose(glucose=5.8, unit="mmol/L", sample_type="control_solution")
    assert sugar.model_dump(exclude_unset=True)["valid"] is False
    assert GlucoseReading.model_validate_json(sugar.model_dump_json()) == sugar


def test_reading_ids_are_pinned_across_releases() -> None:
    # These ids are stored in every gateway outbox, reading store and alert. A change to what goes into
    # the hash would make every re-sent reading look new and be counted twice after an upgrade: such a
    # change needs a new id scheme and a migration, never a silent edit. Values computed once, by the
    # v1 scheme in vitals/identity.py, and pinned here.
    t = datetime(2024, 3, 1, 8, 30)
    kw = {"systolic": 120.0, "diastolic": 80.0, "mean_arterial": 93.0, "pulse_bpm": 72.0}
    assert blood_pressure_reading_id(CUFF, t, 1, **kw) == "c8ffff8c357fef3898b86c434969623e"
    assert blood_pressure_reading_id(CUFF, None, None, **kw) == "a9a2bdd07bdbfcb92c068cec9403ca63"
    assert glucose_reading_id(METER, 5, t) == "13f75ecb4eff835c288014377c11de0e"
