"""Glucose service codecs: Glucose Measurement 0x2A18, Measurement Context 0x2A34, Feature 0x2A51.

Glucose Measurement 0x2A18 (reference/ble-health-profiles.md §2.3; Nordic
GlucoseMeasurementDataCallback; nibble order also in bluetooth-sig-python glucose_measurement.py):

    offset  size  field
    0       1     flags: bit0 time offset, bit1 concentration + type/location, bit2 unit
                  (0 kg/L, 1 mol/L), bit3 sensor status annunciation, bit4 context follows
    1       2     sequence number uint16
    3       7     base time (Date Time)
    10..    2     [time offset sint16, minutes; user-facing time = base time + offset]
            2     [glucose concentration SFLOAT]
            1     [type (low nibble) | sample location (high nibble)]
            2     [sensor status annunciation uint16]

Sensor status bits 5/6 are "result higher / lower than the device can process" per Wireshark
packet-btatt.c (0x0020 / 0x0040) and Cordio; Nordic's names for them are swapped, so only bit
positions are used here.

Glucose Measurement Context 0x2A34 (Nordic GlucoseMeasurementContextDataCallback):
flags(1), sequence number(2), [extended flags(1), bit7], [carbohydrate ID(1) + carbohydrate SFLOAT kg,
bit0], [meal(1), bit1], [tester low nibble | health high nibble (1), bit2], [exercise duration uint16 s
+ intensity uint8 %, bit3], [medication ID(1) + medication SFLOAT, bit4; bit5 unit 0 kg / 1 litre],
[HbA1c SFLOAT %, bit6]. Units are the spec's (kilograms, kilograms-or-litres); the SFLOAT exponent
carries the scale, nothing is assumed (bluetooth-sig-python `carbohydrate_kg`).

Units on the wire: kg/L x 100000 = mg/dL; mol/L x 1000 = mmol/L (Reference Part 3; Nordic
toMgPerDecilitre, Tidepool ble-glucose). 0xB069 = 105e-5 kg/L = 105 mg/dL.

Names: an enum here is named for its form on the wire, so it never shares a name with the
vocabulary in ``vitals``: a one-byte or one-nibble code ends in ``Code`` (``MealCode``,
``TesterCode``, ``HealthCode``, ``CarbohydrateCode``, ``MedicationCode``) and the bits of a status
field end in ``Flag`` (``SensorStatusFlag``). ``device_drivers.readings`` maps them onto ``vitals``.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from decimal import Decimal

from ._enums import WireCode
from ._wire import ByteReader, sint_le, uint_le
from .errors import DecodeError, EncodeError
from .ieee11073 import MderFloat, encode_sfloat, read_sfloat
from .time import DateTime, encode_date_time, read_date_time

# --- 0x2A18 layout -----------------------------------------------------------------------------
GM_FLAGS_OFFSET = 0
GM_SEQUENCE_NUMBER_OFFSET = 1
GM_BASE_TIME_OFFSET = 3
GM_OPTIONAL_FIELDS_OFFSET = 10
GM_MIN_SIZE = 10

GM_FLAG_TIME_OFFSET_PRESENT = 0x01
GM_FLAG_CONCENTRATION_PRESENT = 0x02
GM_FLAG_UNIT_MOL_PER_L = 0x04
GM_FLAG_SENSOR_STATUS_PRESENT = 0x08
GM_FLAG_CONTEXT_FOLLOWS = 0x10

TYPE_NIBBLE_MASK = 0x0F
LOCATION_NIBBLE_SHIFT = 4

KG_PER_L_TO_MG_PER_DL_EXPONENT = 5  # x 100 000
MOL_PER_L_TO_MMOL_PER_L_EXPONENT = 3  # x 1 000

SEQUENCE_NUMBER_MODULUS = 0x10000

# --- 0x2A34 layout -----------------------------------------------------------------------------
GMC_FLAGS_OFFSET = 0
GMC_SEQUENCE_NUMBER_OFFSET = 1
GMC_OPTIONAL_FIELDS_OFFSET = 3
GMC_MIN_SIZE = 3

GMC_FLAG_CARBOHYDRATE_PRESENT = 0x01
GMC_FLAG_MEAL_PRESENT = 0x02
GMC_FLAG_TESTER_HEALTH_PRESENT = 0x04
GMC_FLAG_EXERCISE_PRESENT = 0x08
GMC_FLAG_MEDICATION_PRESENT = 0x10
GMC_FLAG_MEDICATION_UNIT_LITRES = 0x20
GMC_FLAG_HBA1C_PRESENT = 0x40
GMC_FLAG_EXTENDED_FLAGS_PRESENT = 0x80

EXERCISE_DURATION_OVERRUN = 0xFFFF


class GlucoseConcentrationUnit(enum.Enum):
    """Unit of the concentration on the wire (flags bit 2)."""

    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class GlucoseSampleType(WireCode):
    """Type nibble (Nordic GlucoseTypes)."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class GlucoseSampleLocation(WireCode):
    """Sample location nibble."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    SUBCUTANEOUS_TISSUE = 5
    NOT_AVAILABLE = 15


class SensorStatusFlag(enum.IntFlag):
    """Sensor Status Annunciation bits (bit positions per Wireshark packet-btatt.c; bits 12..15 reserved)."""

    DEVICE_BATTERY_LOW = 0x0001
    SENSOR_MALFUNCTION = 0x0002
    SAMPLE_SIZE_INSUFFICIENT = 0x0004
    STRIP_INSERTION_ERROR = 0x0008
    STRIP_TYPE_INCORRECT = 0x0010
    RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS = 0x0020
    RESULT_LOWER_THAN_DEVICE_CAN_PROCESS = 0x0040
    SENSOR_TEMPERATURE_TOO_HIGH = 0x0080
    SENSOR_TEMPERATURE_TOO_LOW = 0x0100
    SENSOR_READ_INTERRUPTED = 0x0200
    GENERAL_DEVICE_FAULT = 0x0400
    TIME_FAULT = 0x0800


# Annunciations that mean the concentration is not a measurement of the patient's glucose.
# Battery low and time fault do not invalidate the value (the time fault is kept for the clock layer).
INVALIDATING_SENSOR_STATUS = (
    SensorStatusFlag.SENSOR_MALFUNCTION
    | SensorStatusFlag.SAMPLE_SIZE_INSUFFICIENT
    | SensorStatusFlag.STRIP_INSERTION_ERROR
    | SensorStatusFlag.STRIP_TYPE_INCORRECT
    | SensorStatusFlag.RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS
    | SensorStatusFlag.RESULT_LOWER_THAN_DEVICE_CAN_PROCESS
    | SensorStatusFlag.SENSOR_TEMPERATURE_TOO_HIGH
    | SensorStatusFlag.SENSOR_TEMPERATURE_TOO_LOW
    | SensorStatusFlag.SENSOR_READ_INTERRUPTED
    | SensorStatusFlag.GENERAL_DEVICE_FAULT
)


def flag_names(value: enum.IntFlag) -> tuple[str, ...]:
    """Lower-case names of the known bits set in ``value``, in bit order."""
    return tuple(
        member.name.lower() for member in type(value) if member.name and member in value and int(member)
    )


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """Glucose Measurement 0x2A18.

    ``concentration`` is in ``unit`` as sent (kg/L or mol/L); use :attr:`glucose_mg_dl` or
    :attr:`glucose_mmol_l` for clinical units. ``valid`` is False for a well-formed record that is not
    a patient glucose value (no concentration, NaN/NRes/INF, control solution, invalidating sensor
    status); ``invalid_reasons`` says why. ``raw`` keeps the bytes as received.
    """

    sequence_number: int
    base_time: DateTime
    time_offset_minutes: int | None = None
    concentration: MderFloat | None = None
    unit: GlucoseConcentrationUnit | None = None
    sample_type: GlucoseSampleType | None = None
    sample_location: GlucoseSampleLocation | None = None
    sensor_status: SensorStatusFlag | None = None
    context_follows: bool = False
    raw: bytes = field(default=b"", compare=False)

    @property
    def glucose_mg_dl(self) -> Decimal | None:
        """Concentration in mg/dL when sent in kg/L (exact decimal), else None."""
        if self.unit is not GlucoseConcentrationUnit.KG_PER_L or self.concentration is None:
            return None
        value = self.concentration.to_decimal()
        return None if value is None else value.scaleb(KG_PER_L_TO_MG_PER_DL_EXPONENT)

    @property
    def glucose_mmol_l(self) -> Decimal | None:
        """Concentration in mmol/L when sent in mol/L (exact decimal), else None."""
        if self.unit is not GlucoseConcentrationUnit.MOL_PER_L or self.concentration is None:
            return None
        value = self.concentration.to_decimal()
        return None if value is None else value.scaleb(MOL_PER_L_TO_MMOL_PER_L_EXPONENT)

    @property
    def user_facing_time(self) -> dt.datetime | None:
        """Base time plus time offset (meter wall clock, naive); None when incomplete or past year 9999."""
        base = self.base_time.to_datetime()
        if base is None:
            return None
        try:
            return base + dt.timedelta(minutes=self.time_offset_minutes or 0)
        except OverflowError:  # 9999-12-31 plus a positive offset: not a representable time
            return None

    @property
    def invalid_reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        if self.concentration is None:
            reasons.append("no glucose concentration")
        elif not self.concentration.is_finite:
            reasons.append(f"glucose concentration is {self.concentration.describe()}")
        elif self.concentration.mantissa < 0:
            reasons.append(f"glucose concentration is negative ({self.concentration.describe()})")
        if self.sample_type is GlucoseSampleType.CONTROL_SOLUTION:
            reasons.append("control solution (sample type)")
        if self.sample_location is GlucoseSampleLocation.CONTROL_SOLUTION:
            reasons.append("control solution (sample location)")
        if self.sensor_status is not None:
            bad = self.sensor_status & INVALIDATING_SENSOR_STATUS
            reasons.extend(f"sensor status: {name}" for name in flag_names(bad))
        return tuple(reasons)

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons


class CarbohydrateCode(WireCode):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class MealCode(WireCode):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


class TesterCode(WireCode):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class HealthCode(WireCode):
    MINOR_HEALTH_ISSUES = 1
    MAJOR_HEALTH_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_HEALTH_ISSUES = 5
    NOT_AVAILABLE = 15


class MedicationCode(WireCode):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(enum.Enum):
    """Medication unit (context flags bit 5)."""

    KILOGRAMS = "kg"
    LITRES = "L"


@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext:
    """Glucose Measurement Context 0x2A34; joins its measurement by ``sequence_number``."""

    sequence_number: int
    extended_flags: int | None = None
    carbohydrate_id: CarbohydrateCode | None = None
    carbohydrate_kg: MderFloat | None = None
    meal: MealCode | None = None
    tester: TesterCode | None = None
    health: HealthCode | None = None
    exercise_duration_seconds: int | None = None
    exercise_intensity_percent: int | None = None
    medication_id: MedicationCode | None = None
    medication: MderFloat | None = None
    medication_unit: MedicationUnit | None = None
    hba1c_percent: MderFloat | None = None
    raw: bytes = field(default=b"", compare=False)

    @property
    def exercise_duration_overrun(self) -> bool:
        """True when the meter reported the duration as 0xFFFF (overrun)."""
        return self.exercise_duration_seconds == EXERCISE_DURATION_OVERRUN


class GlucoseFeature(enum.IntFlag):
    """Glucose Feature 0x2A51 bits (Nordic GlucoseFeatureCallback)."""

    LOW_BATTERY_DETECTION = 0x0001
    SENSOR_MALFUNCTION_DETECTION = 0x0002
    SENSOR_SAMPLE_SIZE = 0x0004
    SENSOR_STRIP_INSERTION_ERROR_DETECTION = 0x0008
    SENSOR_STRIP_TYPE_ERROR_DETECTION = 0x0010
    SENSOR_RESULT_HIGH_LOW_DETECTION = 0x0020
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION = 0x0040
    SENSOR_READ_INTERRUPT_DETECTION = 0x0080
    GENERAL_DEVICE_FAULT = 0x0100
    TIME_FAULT = 0x0200
    MULTIPLE_BOND = 0x0400


def decode_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    """Decode a Glucose Measurement 0x2A18 value. Raises DecodeError for malformed bytes."""
    try:
        reader = ByteReader(data)
        flags = reader.uint8("flags")
        sequence_number = reader.uint16("sequence number")
        base_time = read_date_time(reader)
        time_offset = reader.sint16("time offset") if flags & GM_FLAG_TIME_OFFSET_PRESENT else None
        concentration = sample_type = location = unit = None
        if flags & GM_FLAG_CONCENTRATION_PRESENT:
            concentration = read_sfloat(reader, "glucose concentration")
            type_location = reader.uint8("type and sample location")
            sample_type = GlucoseSampleType(type_location & TYPE_NIBBLE_MASK)
            location = GlucoseSampleLocation(type_location >> LOCATION_NIBBLE_SHIFT)
            unit = (
                GlucoseConcentrationUnit.MOL_PER_L
                if flags & GM_FLAG_UNIT_MOL_PER_L
                else GlucoseConcentrationUnit.KG_PER_L
            )
        status = (
            SensorStatusFlag(reader.uint16("sensor status annunciation"))
            if flags & GM_FLAG_SENSOR_STATUS_PRESENT
            else None
        )
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Glucose Measurement") from None
    return GlucoseMeasurement(
        sequence_number,
        base_time,
        time_offset,
        concentration,
        unit,
        sample_type,
        location,
        status,
        bool(flags & GM_FLAG_CONTEXT_FOLLOWS),
        bytes(data),
    )


def encode_glucose_measurement(value: GlucoseMeasurement) -> bytes:
    """Encode a Glucose Measurement 0x2A18; flags follow from which optional fields are set.

    Concentration, unit, sample type and sample location go together: all set or all None.
    """
    flags = GM_FLAG_CONTEXT_FOLLOWS if value.context_follows else 0
    tail = b""
    if value.time_offset_minutes is not None:
        flags |= GM_FLAG_TIME_OFFSET_PRESENT
        tail += sint_le(value.time_offset_minutes, 2, "time offset")
    group = (value.concentration, value.unit, value.sample_type, value.sample_location)
    if (
        value.concentration is not None
        and value.unit is not None
        and value.sample_type is not None
        and value.sample_location is not None
    ):
        flags |= GM_FLAG_CONCENTRATION_PRESENT
        if value.unit is GlucoseConcentrationUnit.MOL_PER_L:
            flags |= GM_FLAG_UNIT_MOL_PER_L
        nibbles = (int(value.sample_type), int(value.sample_location))
        if not all(0 <= nibble <= TYPE_NIBBLE_MASK for nibble in nibbles):
            raise EncodeError("sample type and sample location must each fit in a nibble")
        tail += encode_sfloat(value.concentration)
        tail += bytes((int(value.sample_type) | int(value.sample_location) << LOCATION_NIBBLE_SHIFT,))
    elif any(part is not None for part in group):
        raise EncodeError("concentration, unit, sample type and sample location must be set together")
    if value.sensor_status is not None:
        flags |= GM_FLAG_SENSOR_STATUS_PRESENT
        tail += uint_le(int(value.sensor_status), 2, "sensor status annunciation")
    return (
        bytes((flags,))
        + uint_le(value.sequence_number, 2, "sequence number")
        + encode_date_time(value.base_time)
        + tail
    )


def decode_glucose_measurement_context(data: bytes) -> GlucoseMeasurementContext:
    """Decode a Glucose Measurement Context 0x2A34 value. Raises DecodeError for malformed bytes."""
    try:
        reader = ByteReader(data)
        flags = reader.uint8("flags")
        sequence_number = reader.uint16("sequence number")
        extended = reader.uint8("extended flags") if flags & GMC_FLAG_EXTENDED_FLAGS_PRESENT else None
        carbohydrate_id = carbohydrate = None
        if flags & GMC_FLAG_CARBOHYDRATE_PRESENT:
            carbohydrate_id = CarbohydrateCode(reader.uint8("carbohydrate ID"))
            carbohydrate = read_sfloat(reader, "carbohydrate")
        meal = MealCode(reader.uint8("meal")) if flags & GMC_FLAG_MEAL_PRESENT else None
        tester = health = None
        if flags & GMC_FLAG_TESTER_HEALTH_PRESENT:
            tester_health = reader.uint8("tester and health")
            tester = TesterCode(tester_health & TYPE_NIBBLE_MASK)
            health = HealthCode(tester_health >> LOCATION_NIBBLE_SHIFT)
        duration = intensity = None
        if flags & GMC_FLAG_EXERCISE_PRESENT:
            duration = reader.uint16("exercise duration")
            intensity = reader.uint8("exercise intensity")
        medication_id = medication = medication_unit = None
        if flags & GMC_FLAG_MEDICATION_PRESENT:
            medication_id = MedicationCode(reader.uint8("medication ID"))
            medication = read_sfloat(reader, "medication")
            medication_unit = (
                MedicationUnit.LITRES if flags & GMC_FLAG_MEDICATION_UNIT_LITRES else MedicationUnit.KILOGRAMS
            )
        hba1c = read_sfloat(reader, "HbA1c") if flags & GMC_FLAG_HBA1C_PRESENT else None
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Glucose Measurement Context") from None
    return GlucoseMeasurementContext(
        sequence_number,
        extended,
        carbohydrate_id,
        carbohydrate,
        meal,
        tester,
        health,
        duration,
        intensity,
        medication_id,
        medication,
        medication_unit,
        hba1c,
        bytes(data),
    )


def encode_glucose_measurement_context(value: GlucoseMeasurementContext) -> bytes:
    """Encode a Glucose Measurement Context 0x2A34; paired fields must be set together."""
    flags = 0
    tail = b""
    if value.extended_flags is not None:
        flags |= GMC_FLAG_EXTENDED_FLAGS_PRESENT
        tail += uint_le(value.extended_flags, 1, "extended flags")
    if (value.carbohydrate_id is None) != (value.carbohydrate_kg is None):
        raise EncodeError("carbohydrate ID and carbohydrate must be set together")
    if value.carbohydrate_id is not None and value.carbohydrate_kg is not None:
        flags |= GMC_FLAG_CARBOHYDRATE_PRESENT
        tail += uint_le(int(value.carbohydrate_id), 1, "carbohydrate ID")
        tail += encode_sfloat(value.carbohydrate_kg)
    if value.meal is not None:
        flags |= GMC_FLAG_MEAL_PRESENT
        tail += uint_le(int(value.meal), 1, "meal")
    if (value.tester is None) != (value.health is None):
        raise EncodeError("tester and health must be set together")
    if value.tester is not None and value.health is not None:
        flags |= GMC_FLAG_TESTER_HEALTH_PRESENT
        if not 0 <= value.tester <= TYPE_NIBBLE_MASK or not 0 <= value.health <= TYPE_NIBBLE_MASK:
            raise EncodeError("tester and health must each fit in a nibble")
        tail += bytes((int(value.tester) | int(value.health) << LOCATION_NIBBLE_SHIFT,))
    if (value.exercise_duration_seconds is None) != (value.exercise_intensity_percent is None):
        raise EncodeError("exercise duration and intensity must be set together")
    if value.exercise_duration_seconds is not None and value.exercise_intensity_percent is not None:
        flags |= GMC_FLAG_EXERCISE_PRESENT
        tail += uint_le(value.exercise_duration_seconds, 2, "exercise duration")
        tail += uint_le(value.exercise_intensity_percent, 1, "exercise intensity")
    medication_parts = (value.medication_id, value.medication, value.medication_unit)
    if any(part is None for part in medication_parts) and any(part is not None for part in medication_parts):
        raise EncodeError("medication ID, medication and medication unit must be set together")
    if value.medication_id is not None and value.medication is not None:
        flags |= GMC_FLAG_MEDICATION_PRESENT
        if value.medication_unit is MedicationUnit.LITRES:
            flags |= GMC_FLAG_MEDICATION_UNIT_LITRES
        tail += uint_le(int(value.medication_id), 1, "medication ID") + encode_sfloat(value.medication)
    if value.hba1c_percent is not None:
        flags |= GMC_FLAG_HBA1C_PRESENT
        tail += encode_sfloat(value.hba1c_percent)
    return bytes((flags,)) + uint_le(value.sequence_number, 2, "sequence number") + tail


def decode_glucose_feature(data: bytes) -> GlucoseFeature:
    """Decode Glucose Feature 0x2A51 (uint16; reserved bits kept)."""
    try:
        reader = ByteReader(data)
        value = reader.uint16("Glucose Feature")
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Glucose Feature") from None
    return GlucoseFeature(value)


def encode_glucose_feature(value: GlucoseFeature) -> bytes:
    """Encode Glucose Feature 0x2A51 (2 bytes)."""
    return uint_le(int(value), 2, "Glucose Feature")


def sequence_number_after(candidate: int, reference: int) -> bool:
    """True when ``candidate`` comes after ``reference`` in uint16 serial-number order (RFC 1982).

    Used across wraparound: 3 comes after 65534. Numbers exactly half the space apart are
    ambiguous and count as not after.
    """
    distance = (candidate - reference) % SEQUENCE_NUMBER_MODULUS
    return 0 < distance < SEQUENCE_NUMBER_MODULUS // 2
