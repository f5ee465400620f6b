"""Reading types: one blood-pressure or glucose measurement as it travels from meter to doctor.

Every reading carries the identity of the meter that took it, the meter's own timestamp beside the
corrected UTC time, its validity with reasons, and the raw bytes it was decoded from (hex), so that
nothing the meter said is lost (DESIGN.md, Storage).

Native value and unit are kept; canonical values (mmHg, mg/dL) are filled in from them when absent
and checked against them when present.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from vitals import plausibility
from vitals.plausibility import PlausibleRange
from vitals.units import GlucoseUnit, PressureUnit, glucose_to_mg_dl, pressure_to_mmhg

_CANONICAL_TOLERANCE = 0.01


class ReadingKind(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    GLUCOSE = "glucose"


class BloodPressureStatus(StrEnum):
    """Measurement Status bits of 0x2A35 (docs/references.md#ref-bt-bls; Nordic BloodPressureTypes)."""

    BODY_MOVEMENT = "body_movement"  # bit 0
    CUFF_TOO_LOOSE = "cuff_too_loose"  # bit 1
    IRREGULAR_PULSE = "irregular_pulse"  # bit 2
    PULSE_RATE_ABOVE_RANGE = "pulse_rate_above_range"  # bits 3-4 = 01
    PULSE_RATE_BELOW_RANGE = "pulse_rate_below_range"  # bits 3-4 = 10
    IMPROPER_POSITION = "improper_position"  # bit 5


# Status flags that make the BP values unreliable for averages (clinical-rules.md §7, DQ-02: "readings
# with device status flags (movement, cuff, position) ... are excluded from averages"). Irregular
# pulse is kept in averages but feeds HR-IRR.
BP_STATUS_EXCLUDED_FROM_AVERAGES = frozenset(
    {
        BloodPressureStatus.BODY_MOVEMENT,
        BloodPressureStatus.CUFF_TOO_LOOSE,
        BloodPressureStatus.IMPROPER_POSITION,
    }
)


class SampleType(StrEnum):
    """Glucose Measurement type nibble (docs/references.md#ref-bt-gls; Nordic GlucoseTypes)."""

    CAPILLARY_WHOLE_BLOOD = "capillary_whole_blood"  # 1
    CAPILLARY_PLASMA = "capillary_plasma"  # 2
    VENOUS_WHOLE_BLOOD = "venous_whole_blood"  # 3
    VENOUS_PLASMA = "venous_plasma"  # 4
    ARTERIAL_WHOLE_BLOOD = "arterial_whole_blood"  # 5
    ARTERIAL_PLASMA = "arterial_plasma"  # 6
    UNDETERMINED_WHOLE_BLOOD = "undetermined_whole_blood"  # 7
    UNDETERMINED_PLASMA = "undetermined_plasma"  # 8
    INTERSTITIAL_FLUID = "interstitial_fluid"  # 9
    CONTROL_SOLUTION = "control_solution"  # 10


class SampleLocation(StrEnum):
    """Glucose Measurement sample-location nibble (docs/references.md#ref-bt-gls)."""

    FINGER = "finger"  # 1
    ALTERNATE_SITE_TEST = "alternate_site_test"  # 2
    EARLOBE = "earlobe"  # 3
    CONTROL_SOLUTION = "control_solution"  # 4
    SUBCUTANEOUS_TISSUE = "subcutaneous_tissue"  # 5
    NOT_AVAILABLE = "not_available"  # 15


class SensorStatus(StrEnum):
    """Sensor Status Annunciation bits of 0x2A18, by bit position (docs/references.md#ref-bt-gls:
    bit 5 = result too high, bit 6 = too low per Wireshark packet-btatt.c; Nordic's names are swapped)."""

    DEVICE_BATTERY_LOW = "device_battery_low"  # 0
    SENSOR_MALFUNCTION = "sensor_malfunction"  # 1
    SAMPLE_SIZE_INSUFFICIENT = "sample_size_insufficient"  # 2
    STRIP_INSERTION_ERROR = "strip_insertion_error"  # 3
    STRIP_TYPE_INCORRECT = "strip_type_incorrect"  # 4
    RESULT_TOO_HIGH = "result_too_high"  # 5
    RESULT_TOO_LOW = "result_too_low"  # 6
    SENSOR_TEMPERATURE_TOO_HIGH = "sensor_temperature_too_high"  # 7
    SENSOR_TEMPERATURE_TOO_LOW = "sensor_temperature_too_low"  # 8
    SENSOR_READ_INTERRUPTED = "sensor_read_interrupted"  # 9
    GENERAL_DEVICE_FAULT = "general_device_fault"  # 10
    TIME_FAULT = "time_fault"  # 11


# Annunciations that mean the concentration itself cannot be trusted. A low battery or a time fault
# does not invalidate the value (the time fault is handled by clock correction).
SENSOR_STATUS_INVALIDATING = frozenset(SensorStatus) - {
    SensorStatus.DEVICE_BATTERY_LOW,
    SensorStatus.TIME_FAULT,
}


class Meal(StrEnum):
    """Glucose Measurement Context meal field (docs/references.md#ref-bt-gls)."""

    PREPRANDIAL = "preprandial"  # 1
    POSTPRANDIAL = "postprandial"  # 2
    FASTING = "fasting"  # 3
    CASUAL = "casual"  # 4
    BEDTIME = "bedtime"  # 5


class Tester(StrEnum):
    SELF = "self"  # 1
    HEALTH_CARE_PROFESSIONAL = "health_care_professional"  # 2
    LAB_TEST = "lab_test"  # 3
    NOT_AVAILABLE = "not_available"  # 15


class Health(StrEnum):
    MINOR_ISSUES = "minor_issues"  # 1
    MAJOR_ISSUES = "major_issues"  # 2
    DURING_MENSES = "during_menses"  # 3
    UNDER_STRESS = "under_stress"  # 4
    NO_ISSUES = "no_issues"  # 5
    NOT_AVAILABLE = "not_available"  # 15


class CarbohydrateId(StrEnum):
    BREAKFAST = "breakfast"  # 1
    LUNCH = "lunch"  # 2
    DINNER = "dinner"  # 3
    SNACK = "snack"  # 4
    DRINK = "drink"  # 5
    SUPPER = "supper"  # 6
    BRUNCH = "brunch"  # 7


class MedicationId(StrEnum):
    RAPID_ACTING_INSULIN = "rapid_acting_insulin"  # 1
    SHORT_ACTING_INSULIN = "short_acting_insulin"  # 2
    INTERMEDIATE_ACTING_INSULIN = "intermediate_acting_insulin"  # 3
    LONG_ACTING_INSULIN = "long_acting_insulin"  # 4
    PRE_MIXED_INSULIN = "pre_mixed_insulin"  # 5


class DeviceIdentity(BaseModel):
    """Who measured: the meter, as its Device Information service describes it.

    `serial_number` identifies the meter where it is known; otherwise the BLE address does. Both are
    device identifiers, not personal data, and never appear in topics.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    manufacturer: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    serial_number: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=64)
    firmware_revision: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _needs_serial_or_address(self) -> DeviceIdentity:
        if not self.serial_number and not self.address:
            raise ValueError("a device needs a serial_number or an address to be identified")
        return self

    @property
    def meter_key(self) -> str:
        """Stable identity string: normalised manufacturer, model and serial (or address)."""
        unit_id = self.serial_number or (self.address or "").upper()
        return "|".join((_norm(self.manufacturer), _norm(self.model), unit_id.strip()))


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class _ReadingBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reading_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    device: DeviceIdentity
    patient_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    measured_at: AwareDatetime = Field(description="Corrected measurement time, UTC.")
    device_time: datetime | None = Field(
        default=None, description="The meter's own timestamp, as it sent it (meter-local, naive)."
    )
    clock_offset_s: float | None = Field(
        default=None, description="Meter clock minus gateway clock at sync time, seconds."
    )
    received_at: AwareDatetime | None = Field(default=None, description="When the gateway got it, UTC.")
    valid: bool = True
    invalid_reasons: tuple[str, ...] = ()
    raw_hex: str | None = Field(default=None, pattern=r"^([0-9a-f]{2})*$", max_length=4096)

    @field_validator("measured_at", "received_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


# The derivations below run as model validators in "after" mode, on the already validated and
# typed fields: pydantic-core then parses a batch's JSON straight into the models, instead of first
# building a Python dict of every reading for a "before" validator, which costs most of a batch's
# parse (bench/ingest_throughput.py measures it).
# The models are frozen, so derived values are written into the instance's __dict__, and the fields
# they fill are marked set, exactly as if the input had carried them.
_BP_CANONICAL: Final = (
    ("systolic", "systolic_mmhg"),
    ("diastolic", "diastolic_mmhg"),
    ("mean_arterial", "mean_arterial_mmhg"),
)
_BP_DERIVED_FIELDS: Final = frozenset(name for pair in _BP_CANONICAL for name in pair)
_GLUCOSE_DERIVED_FIELDS: Final = frozenset(("glucose", "glucose_mg_dl"))
_VALIDITY_FIELDS: Final = frozenset(("valid", "invalid_reasons"))


def _measured(value: float | None) -> float | None:
    """A NaN (the meter's "not measured") is stored as None."""
    return None if value is None or math.isnan(value) else value


def _canonical(
    derived: dict[str, Any], native: str, canonical: str, given: float | None, expected: float | None
) -> None:
    """Fill the canonical value from the native one, or check a canonical value sent with it."""
    if given is None:
        derived[canonical] = expected
    elif expected is None or abs(given - expected) > _CANONICAL_TOLERANCE:
        raise ValueError(f"{canonical} does not match {native} in its unit")
    else:
        derived[canonical] = given


def _check(
    limit: PlausibleRange, value: float | None, reasons: list[str], missing: str | None = None
) -> None:
    if value is None:
        if missing:
            reasons.append(missing)
        return
    violation = limit.violation(value)
    if violation:
        reasons.append(violation)


def _apply(
    model: BaseModel, derived: dict[str, Any], derived_fields: frozenset[str], reasons: list[str]
) -> None:
    """Write the derived values into a just-validated frozen reading, marked as set fields."""
    fields_set = model.__pydantic_fields_set__
    fields_set.update(derived_fields)
    if reasons:
        known: tuple[str, ...] = model.__dict__["invalid_reasons"]
        derived["invalid_reasons"] = known + tuple(r for r in reasons if r not in known)
        derived["valid"] = False
        fields_set.update(_VALIDITY_FIELDS)
    model.__dict__.update(derived)


class BloodPressureReading(_ReadingBase):
    """One cuff measurement (Blood Pressure Measurement 0x2A35 or its BLS 1.1 enhanced form)."""

    kind: Literal[ReadingKind.BLOOD_PRESSURE] = ReadingKind.BLOOD_PRESSURE
    unit: PressureUnit = PressureUnit.MMHG
    systolic: float | None = Field(description="Systolic in the cuff's unit; None if the cuff sent NaN.")
    diastolic: float | None
    mean_arterial: float | None = None
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    mean_arterial_mmhg: float | None = None
    pulse_bpm: float | None = None
    user_id: int | None = Field(default=None, ge=0, le=254, description="The cuff's user slot.")
    measurement_status: frozenset[BloodPressureStatus] = frozenset()

    @model_validator(mode="after")
    def _fill_canonical_and_validity(self) -> BloodPressureReading:
        fields = self.__dict__
        unit: PressureUnit = fields["unit"]
        derived: dict[str, Any] = {}
        for native, canonical in _BP_CANONICAL:
            value = derived[native] = _measured(fields[native])
            expected = None if value is None else pressure_to_mmhg(value, unit)
            _canonical(derived, native, canonical, fields[canonical], expected)
        pulse = fields["pulse_bpm"]
        if pulse is not None and math.isnan(pulse):
            derived["pulse_bpm"] = pulse = None
        reasons: list[str] = []
        systolic, diastolic = derived["systolic_mmhg"], derived["diastolic_mmhg"]
        _check(plausibility.SYSTOLIC_MMHG, systolic, reasons, "systolic_mmhg: not measured")
        _check(plausibility.DIASTOLIC_MMHG, diastolic, reasons, "diastolic_mmhg: not measured")
        _check(plausibility.MEAN_ARTERIAL_MMHG, derived["mean_arterial_mmhg"], reasons)
        _check(plausibility.PULSE_BPM, pulse, reasons)
        if systolic is not None and diastolic is not None and diastolic >= systolic:
            reasons.append("diastolic_mmhg: not below systolic_mmhg")
        _apply(self, derived, _BP_DERIVED_FIELDS, reasons)
        return self

    @property
    def excluded_from_averages(self) -> bool:
        """True when the cuff flagged the measurement unreliable or it is invalid (DQ-02)."""
        return not self.valid or bool(self.measurement_status & BP_STATUS_EXCLUDED_FROM_AVERAGES)


class GlucoseContext(BaseModel):
    """Glucose Measurement Context 0x2A34, joined to its measurement by sequence number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    carbohydrate_id: CarbohydrateId | None = None
    carbohydrate_grams: float | None = None
    exercise_duration_s: int | None = Field(default=None, ge=0, le=65535)
    exercise_intensity_percent: int | None = Field(default=None, ge=0, le=100)
    medication_id: MedicationId | None = None
    medication_amount: float | None = None
    medication_unit: Literal["mg", "mL"] | None = None
    hba1c_percent: float | None = None


class GlucoseReading(_ReadingBase):
    """One glucose meter record (Glucose Measurement 0x2A18 plus its optional context)."""

    kind: Literal[ReadingKind.GLUCOSE] = ReadingKind.GLUCOSE
    sequence_number: int = Field(ge=0, le=0xFFFF)
    unit: GlucoseUnit = GlucoseUnit.MG_DL
    glucose: float | None = Field(description="Concentration in the meter's unit; None if not sent or NaN.")
    glucose_mg_dl: float | None = None
    sample_type: SampleType | None = None
    sample_location: SampleLocation | None = None
    sensor_status: frozenset[SensorStatus] = frozenset()
    context: GlucoseContext | None = None

    @model_validator(mode="after")
    def _fill_canonical_and_validity(self) -> GlucoseReading:
        fields = self.__dict__
        value = _measured(fields["glucose"])
        derived: dict[str, Any] = {"glucose": value}
        expected = None if value is None else glucose_to_mg_dl(value, fields["unit"])
        _canonical(derived, "glucose", "glucose_mg_dl", fields["glucose_mg_dl"], expected)
        reasons: list[str] = []
        _check(plausibility.GLUCOSE_MG_DL, derived["glucose_mg_dl"], reasons, "glucose_mg_dl: not measured")
        if fields["sample_type"] is SampleType.CONTROL_SOLUTION:
            reasons.append("sample_type: control solution, not a patient sample")
        elif fields["sample_location"] is SampleLocation.CONTROL_SOLUTION:
            reasons.append("sample_location: control solution, not a patient sample")
        for status in sorted(fields["sensor_status"]):
            if status in SENSOR_STATUS_INVALIDATING:
                reasons.append(f"sensor_status: {status.value}")
        _apply(self, derived, _GLUCOSE_DERIVED_FIELDS, reasons)
        return self


Reading = Annotated[BloodPressureReading | GlucoseReading, Field(discriminator="kind")]
