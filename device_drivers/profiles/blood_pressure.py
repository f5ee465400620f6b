"""Blood Pressure service codecs: 0x2A35, 0x2A36, 0x2A49 and BLS 1.1 0x2B34, 0x2B36.

Blood Pressure Measurement 0x2A35 (Indicate) and Intermediate Cuff Pressure 0x2A36 (Notify) share one
layout (reference/ble-health-profiles.md §2.2; Nordic BloodPressureMeasurementDataCallback,
IntermediateCuffPressureDataCallback; flags from bluetooth-sig-python blood_pressure_common.py):

    offset  size  field
    0       1     flags: bit0 unit (0 mmHg, 1 kPa), bit1 time stamp, bit2 pulse rate, bit3 user id,
                  bit4 measurement status, bits 5..7 reserved (ignored)
    1       2     systolic SFLOAT        (0x2A36: current cuff pressure)
    3       2     diastolic SFLOAT       (0x2A36: unused)
    5       2     mean arterial pressure (0x2A36: unused)
    7..     7     [time stamp, Date Time]
            2     [pulse rate SFLOAT, beats per minute]
            1     [user id uint8, 0xFF unknown user]
            2     [measurement status uint16]

Measurement Status (Nordic BloodPressureTypes.BPMStatus; hass-omron bls.py uses 0x20 for position):
bit0 body movement, bit1 cuff too loose, bit2 irregular pulse, bits 3..4 pulse rate range
(00 within, 01 exceeds upper limit, 10 below lower limit, 11 reserved), bit5 improper measurement
position, bits 6..15 reserved. (bluetooth-sig-python's 0x08/0x10 mapping is wrong.)

Enhanced Blood Pressure Measurement 0x2B34 (BLS 1.1; bluetooth-sig-python
enhanced_blood_pressure_measurement.py): flags bit0 kPa, bit1 time stamp (uint32 seconds since the
epoch), bit2 pulse, bit3 user id, bit4 status, bit5 user facing time (uint32), bit6 epoch start
(0 = 1900, 1 = 2000); fields in that order after systolic, diastolic, MAP.

Blood Pressure Record 0x2B36 (BLS 1.1). Fields, from the GATT Specification Supplement's field table
(GSS YAML org.bluetooth.characteristic.blood_pressure_record in the Bluetooth SIG's public repository,
as quoted by bt-hci's generated src/uuid/characteristic.rs, SIG commit 22c4a7a7):

    offset  size    field
    0       1       Segmentation Header (boolean8): bit0 first segment, bit1 last segment, bits 2..7
                    the rolling segment counter (bit layout: bluetooth-sig-python
                    blood_pressure_record.py; reference/ble-health-profiles.md §2.2)
    1       2       Sequence Number uint16: "starts at 0 and loops back to 0 after 65536 records
                    (per user)"
    3       2       UUID uint16 of the recorded characteristic
    5       var     Recorded Characteristic: "a part of or a complete characteristic value"
    end-2   0 or 2  E2E-CRC uint16: "the CRC over all the data of a complete single or multi-message
                    record", present as the service says (BLS 1.1: Blood Pressure Feature bit 6)

Every segment carries the header, the sequence number and the UUID; a CRC over a whole record can
only follow its last byte, so it ends the record's last segment (first and last in one for a record
that fits one segment) and is not looked for in the segments before.

Names: an enum here is named for the Measurement field it decodes, so it never shares a name with
the vocabulary in ``vitals``: ``MeasurementPressureUnit`` (flags bit 0) and ``MeasurementStatusFlag``
(the bits of Measurement Status); ``glucose`` follows the same rule. ``device_drivers.readings``
maps them onto ``vitals``.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from ._wire import ByteReader, uint_le
from .errors import DecodeError, EncodeError
from .ieee11073 import MderFloat, SpecialValue, encode_sfloat, read_sfloat
from .time import DateTime, encode_date_time, read_date_time

# --- 0x2A35 / 0x2A36 layout -------------------------------------------------------------------
BPM_FLAGS_OFFSET = 0
BPM_SYSTOLIC_OFFSET = 1
BPM_DIASTOLIC_OFFSET = 3
BPM_MEAN_ARTERIAL_PRESSURE_OFFSET = 5
BPM_OPTIONAL_FIELDS_OFFSET = 7
BPM_MIN_SIZE = 7
BPM_MAX_SIZE = 19

BPM_FLAG_UNIT_KPA = 0x01
BPM_FLAG_TIME_STAMP_PRESENT = 0x02
BPM_FLAG_PULSE_RATE_PRESENT = 0x04
BPM_FLAG_USER_ID_PRESENT = 0x08
BPM_FLAG_MEASUREMENT_STATUS_PRESENT = 0x10

USER_ID_UNKNOWN = 0xFF

# --- 0x2B34 flags ------------------------------------------------------------------------------
EBPM_FLAG_UNIT_KPA = 0x01
EBPM_FLAG_TIME_STAMP_PRESENT = 0x02
EBPM_FLAG_PULSE_RATE_PRESENT = 0x04
EBPM_FLAG_USER_ID_PRESENT = 0x08
EBPM_FLAG_MEASUREMENT_STATUS_PRESENT = 0x10
EBPM_FLAG_USER_FACING_TIME_PRESENT = 0x20
EBPM_FLAG_EPOCH_2000 = 0x40
EPOCH_1900 = dt.datetime(1900, 1, 1)
EPOCH_2000 = dt.datetime(2000, 1, 1)

# --- 0x2B36 layout -----------------------------------------------------------------------------
BP_RECORD_HEADER_OFFSET = 0
BP_RECORD_SEQUENCE_NUMBER_OFFSET = 1
BP_RECORD_UUID_OFFSET = 3
BP_RECORD_VALUE_OFFSET = 5
BP_RECORD_MIN_SIZE = 5
BP_RECORD_FIRST_SEGMENT = 0x01
BP_RECORD_LAST_SEGMENT = 0x02
BP_RECORD_COUNTER_SHIFT = 2
BP_RECORD_COUNTER_MASK = 0x3F
E2E_CRC_SIZE = 2

# --- 0x2A36 status ----------------------------------------------------------------------------
MEASUREMENT_STATUS_PULSE_RANGE_SHIFT = 3
MEASUREMENT_STATUS_PULSE_RANGE_MASK = 0x03


class MeasurementPressureUnit(enum.Enum):
    """Unit of the pressure fields (flags bit 0)."""

    MMHG = "mmHg"
    KPA = "kPa"


class MeasurementStatusFlag(enum.IntFlag):
    """Single-bit annunciations of the Measurement Status field."""

    BODY_MOVEMENT_DETECTED = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE_DETECTED = 0x0004
    IMPROPER_MEASUREMENT_POSITION = 0x0020


class PulseRateRange(enum.IntEnum):
    """Bits 3..4 of the Measurement Status field."""

    WITHIN_RANGE = 0
    EXCEEDS_UPPER_LIMIT = 1
    BELOW_LOWER_LIMIT = 2
    RESERVED = 3


@dataclass(frozen=True, slots=True)
class MeasurementStatus:
    """Measurement Status (16 bits): flags, pulse-rate range, and the raw value (reserved bits kept)."""

    flags: MeasurementStatusFlag
    pulse_rate_range: PulseRateRange
    raw: int

    @classmethod
    def from_raw(cls, raw: int) -> MeasurementStatus:
        known = sum(int(flag) for flag in MeasurementStatusFlag)
        return cls(
            MeasurementStatusFlag(raw & known),
            PulseRateRange(raw >> MEASUREMENT_STATUS_PULSE_RANGE_SHIFT & MEASUREMENT_STATUS_PULSE_RANGE_MASK),
            raw,
        )

    @classmethod
    def of(
        cls,
        flags: MeasurementStatusFlag | None = None,
        pulse_rate_range: PulseRateRange = PulseRateRange.WITHIN_RANGE,
    ) -> MeasurementStatus:
        """Status built from its parts (for encoders and virtual meters)."""
        flags = MeasurementStatusFlag(0) if flags is None else flags
        raw = int(flags) | int(pulse_rate_range) << MEASUREMENT_STATUS_PULSE_RANGE_SHIFT
        return cls(flags, pulse_rate_range, raw)

    @property
    def names(self) -> tuple[str, ...]:
        """Lower-case names of the annunciations that are set (pulse range included when not within)."""
        names = [flag.name.lower() for flag in MeasurementStatusFlag if flag in self.flags and flag.name]
        if self.pulse_rate_range is not PulseRateRange.WITHIN_RANGE:
            names.append(f"pulse_rate_{self.pulse_rate_range.name.lower()}")
        return tuple(names)


class BloodPressureFeature(enum.IntFlag):
    """Blood Pressure Feature 0x2A49 bits (bluetooth-sig-python blood_pressure_feature.py)."""

    BODY_MOVEMENT_DETECTION = 0x0001
    CUFF_FIT_DETECTION = 0x0002
    IRREGULAR_PULSE_DETECTION = 0x0004
    PULSE_RATE_RANGE_DETECTION = 0x0008
    MEASUREMENT_POSITION_DETECTION = 0x0010
    MULTIPLE_BOND = 0x0020
    E2E_CRC = 0x0040
    USER_DATA_SERVICE = 0x0080
    USER_FACING_TIME = 0x0100


def _value_reasons(label: str, value: MderFloat | None) -> list[str]:
    if value is None:
        return []
    if not value.is_finite:
        return [f"{label} is {value.describe()}"]
    if value.mantissa < 0:
        return [f"{label} is negative ({value.describe()})"]
    return []


class _MeasuredValues:
    """Validity of a cuff measurement (0x2A35 and its BLS 1.1 enhanced form share these fields): NaN,
    NRes, infinities or reserved SFLOAT values make it invalid, with the reason."""

    __slots__ = ()
    systolic: MderFloat
    diastolic: MderFloat
    mean_arterial_pressure: MderFloat
    pulse_rate_bpm: MderFloat | None

    @property
    def invalid_reasons(self) -> tuple[str, ...]:
        return tuple(
            _value_reasons("systolic", self.systolic)
            + _value_reasons("diastolic", self.diastolic)
            + _value_reasons("mean arterial pressure", self.mean_arterial_pressure)
            + _value_reasons("pulse rate", self.pulse_rate_bpm)
        )

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement(_MeasuredValues):
    """Blood Pressure Measurement 0x2A35.

    ``valid`` is False for a well-formed reading that carries no usable pressure (a NaN, NRes,
    infinite, reserved or negative systolic, diastolic, mean arterial pressure or pulse), as a cuff
    sends after showing "Err"; ``invalid_reasons`` says why. ``raw`` keeps the bytes as received.
    """

    unit: MeasurementPressureUnit
    systolic: MderFloat
    diastolic: MderFloat
    mean_arterial_pressure: MderFloat
    timestamp: DateTime | None = None
    pulse_rate_bpm: MderFloat | None = None
    user_id: int | None = None
    measurement_status: MeasurementStatus | None = None
    raw: bytes = field(default=b"", compare=False)


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """Intermediate Cuff Pressure 0x2A36: the cuff pressure while the cuff inflates or deflates."""

    unit: MeasurementPressureUnit
    cuff_pressure: MderFloat
    timestamp: DateTime | None = None
    pulse_rate_bpm: MderFloat | None = None
    user_id: int | None = None
    measurement_status: MeasurementStatus | None = None
    raw: bytes = field(default=b"", compare=False)

    @property
    def invalid_reasons(self) -> tuple[str, ...]:
        return tuple(_value_reasons("cuff pressure", self.cuff_pressure))

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons


@dataclass(frozen=True, slots=True)
class EnhancedBloodPressureMeasurement(_MeasuredValues):
    """Enhanced Blood Pressure Measurement 0x2B34 (BLS 1.1).

    ``time_stamp_seconds`` and ``user_facing_time_seconds`` count seconds since ``epoch_start_year``
    (1900 or 2000, flags bit 6).
    """

    unit: MeasurementPressureUnit
    systolic: MderFloat
    diastolic: MderFloat
    mean_arterial_pressure: MderFloat
    time_stamp_seconds: int | None = None
    pulse_rate_bpm: MderFloat | None = None
    user_id: int | None = None
    measurement_status: MeasurementStatus | None = None
    user_facing_time_seconds: int | None = None
    epoch_start_year: int = 2000
    raw: bytes = field(default=b"", compare=False)

    def _from_epoch(self, seconds: int | None) -> dt.datetime | None:
        if seconds is None:
            return None
        epoch = EPOCH_2000 if self.epoch_start_year == 2000 else EPOCH_1900
        return epoch + dt.timedelta(seconds=seconds)

    @property
    def time_stamp(self) -> dt.datetime | None:
        """Time stamp as a naive datetime on the device's time base, or None."""
        return self._from_epoch(self.time_stamp_seconds)

    @property
    def user_facing_time(self) -> dt.datetime | None:
        """User facing time as a naive datetime, or None."""
        return self._from_epoch(self.user_facing_time_seconds)


@dataclass(frozen=True, slots=True)
class BloodPressureRecord:
    """Blood Pressure Record 0x2B36: one segment of a stored record wrapping another characteristic."""

    first_segment: bool
    last_segment: bool
    segment_counter: int
    sequence_number: int
    recorded_uuid: int
    recorded_value: bytes
    e2e_crc: int | None = None
    raw: bytes = field(default=b"", compare=False)

    @property
    def is_complete(self) -> bool:
        """True when this one segment carries the whole recorded value."""
        return self.first_segment and self.last_segment


def _unit(flags: int) -> MeasurementPressureUnit:
    return MeasurementPressureUnit.KPA if flags & BPM_FLAG_UNIT_KPA else MeasurementPressureUnit.MMHG


def _decode_bpm_fields(
    data: bytes,
) -> tuple[
    int,
    MderFloat,
    MderFloat,
    MderFloat,
    DateTime | None,
    MderFloat | None,
    int | None,
    MeasurementStatus | None,
]:
    reader = ByteReader(data)
    flags = reader.uint8("flags")
    systolic = read_sfloat(reader, "systolic")
    diastolic = read_sfloat(reader, "diastolic")
    mean = read_sfloat(reader, "mean arterial pressure")
    timestamp = read_date_time(reader) if flags & BPM_FLAG_TIME_STAMP_PRESENT else None
    pulse = read_sfloat(reader, "pulse rate") if flags & BPM_FLAG_PULSE_RATE_PRESENT else None
    user_id = reader.uint8("user id") if flags & BPM_FLAG_USER_ID_PRESENT else None
    status = (
        MeasurementStatus.from_raw(reader.uint16("measurement status"))
        if flags & BPM_FLAG_MEASUREMENT_STATUS_PRESENT
        else None
    )
    reader.expect_end()
    return flags, systolic, diastolic, mean, timestamp, pulse, user_id, status


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    """Decode a Blood Pressure Measurement 0x2A35 value. Raises DecodeError for malformed bytes."""
    try:
        flags, systolic, diastolic, mean, timestamp, pulse, user_id, status = _decode_bpm_fields(data)
    except DecodeError as error:
        raise error.with_characteristic("Blood Pressure Measurement") from None
    return BloodPressureMeasurement(
        _unit(flags), systolic, diastolic, mean, timestamp, pulse, user_id, status, bytes(data)
    )


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    """Decode an Intermediate Cuff Pressure 0x2A36 value (diastolic and MAP fields are ignored)."""
    try:
        flags, cuff, _diastolic, _mean, timestamp, pulse, user_id, status = _decode_bpm_fields(data)
    except DecodeError as error:
        raise error.with_characteristic("Intermediate Cuff Pressure") from None
    return IntermediateCuffPressure(_unit(flags), cuff, timestamp, pulse, user_id, status, bytes(data))


def _encode_bpm(
    unit: MeasurementPressureUnit,
    first: MderFloat,
    second: MderFloat,
    third: MderFloat,
    timestamp: DateTime | None,
    pulse: MderFloat | None,
    user_id: int | None,
    status: MeasurementStatus | None,
) -> bytes:
    flags = BPM_FLAG_UNIT_KPA if unit is MeasurementPressureUnit.KPA else 0
    tail = b""
    if timestamp is not None:
        flags |= BPM_FLAG_TIME_STAMP_PRESENT
        tail += encode_date_time(timestamp)
    if pulse is not None:
        flags |= BPM_FLAG_PULSE_RATE_PRESENT
        tail += encode_sfloat(pulse)
    if user_id is not None:
        flags |= BPM_FLAG_USER_ID_PRESENT
        tail += uint_le(user_id, 1, "user id")
    if status is not None:
        flags |= BPM_FLAG_MEASUREMENT_STATUS_PRESENT
        tail += uint_le(status.raw, 2, "measurement status")
    return bytes((flags,)) + encode_sfloat(first) + encode_sfloat(second) + encode_sfloat(third) + tail


def encode_blood_pressure_measurement(value: BloodPressureMeasurement) -> bytes:
    """Encode a Blood Pressure Measurement 0x2A35; flags follow from which optional fields are set."""
    return _encode_bpm(
        value.unit,
        value.systolic,
        value.diastolic,
        value.mean_arterial_pressure,
        value.timestamp,
        value.pulse_rate_bpm,
        value.user_id,
        value.measurement_status,
    )


def encode_intermediate_cuff_pressure(value: IntermediateCuffPressure) -> bytes:
    """Encode an Intermediate Cuff Pressure 0x2A36 (diastolic and MAP sent as NaN)."""
    nan = MderFloat.of(SpecialValue.NAN)
    return _encode_bpm(
        value.unit,
        value.cuff_pressure,
        nan,
        nan,
        value.timestamp,
        value.pulse_rate_bpm,
        value.user_id,
        value.measurement_status,
    )


def decode_blood_pressure_feature(data: bytes) -> BloodPressureFeature:
    """Decode Blood Pressure Feature 0x2A49 (uint16; reserved bits are kept)."""
    try:
        reader = ByteReader(data)
        value = reader.uint16("Blood Pressure Feature")
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Blood Pressure Feature") from None
    return BloodPressureFeature(value)


def encode_blood_pressure_feature(value: BloodPressureFeature) -> bytes:
    """Encode Blood Pressure Feature 0x2A49 (2 bytes)."""
    return uint_le(int(value), 2, "Blood Pressure Feature")


def decode_enhanced_blood_pressure_measurement(data: bytes) -> EnhancedBloodPressureMeasurement:
    """Decode an Enhanced Blood Pressure Measurement 0x2B34 value (BLS 1.1)."""
    try:
        reader = ByteReader(data)
        flags = reader.uint8("flags")
        systolic = read_sfloat(reader, "systolic")
        diastolic = read_sfloat(reader, "diastolic")
        mean = read_sfloat(reader, "mean arterial pressure")
        time_stamp = reader.uint32("time stamp") if flags & EBPM_FLAG_TIME_STAMP_PRESENT else None
        pulse = read_sfloat(reader, "pulse rate") if flags & EBPM_FLAG_PULSE_RATE_PRESENT else None
        user_id = reader.uint8("user id") if flags & EBPM_FLAG_USER_ID_PRESENT else None
        status = (
            MeasurementStatus.from_raw(reader.uint16("measurement status"))
            if flags & EBPM_FLAG_MEASUREMENT_STATUS_PRESENT
            else None
        )
        user_facing = (
            reader.uint32("user facing time") if flags & EBPM_FLAG_USER_FACING_TIME_PRESENT else None
        )
        reader.expect_end()
    except DecodeError as error:
        raise error.with_characteristic("Enhanced Blood Pressure Measurement") from None
    return EnhancedBloodPressureMeasurement(
        MeasurementPressureUnit.KPA if flags & EBPM_FLAG_UNIT_KPA else MeasurementPressureUnit.MMHG,
        systolic,
        diastolic,
        mean,
        time_stamp,
        pulse,
        user_id,
        status,
        user_facing,
        2000 if flags & EBPM_FLAG_EPOCH_2000 else 1900,
        bytes(data),
    )


def encode_enhanced_blood_pressure_measurement(value: EnhancedBloodPressureMeasurement) -> bytes:
    """Encode an Enhanced Blood Pressure Measurement 0x2B34."""
    if value.epoch_start_year not in (1900, 2000):
        raise EncodeError(f"epoch start year {value.epoch_start_year} is neither 1900 nor 2000")
    flags = EBPM_FLAG_UNIT_KPA if value.unit is MeasurementPressureUnit.KPA else 0
    if value.epoch_start_year == 2000:
        flags |= EBPM_FLAG_EPOCH_2000
    tail = b""
    if value.time_stamp_seconds is not None:
        flags |= EBPM_FLAG_TIME_STAMP_PRESENT
        tail += uint_le(value.time_stamp_seconds, 4, "time stamp")
    if value.pulse_rate_bpm is not None:
        flags |= EBPM_FLAG_PULSE_RATE_PRESENT
        tail += encode_sfloat(value.pulse_rate_bpm)
    if value.user_id is not None:
        flags |= EBPM_FLAG_USER_ID_PRESENT
        tail += uint_le(value.user_id, 1, "user id")
    if value.measurement_status is not None:
        flags |= EBPM_FLAG_MEASUREMENT_STATUS_PRESENT
        tail += uint_le(value.measurement_status.raw, 2, "measurement status")
    if value.user_facing_time_seconds is not None:
        flags |= EBPM_FLAG_USER_FACING_TIME_PRESENT
        tail += uint_le(value.user_facing_time_seconds, 4, "user facing time")
    return (
        bytes((flags,))
        + encode_sfloat(value.systolic)
        + encode_sfloat(value.diastolic)
        + encode_sfloat(value.mean_arterial_pressure)
        + tail
    )


def decode_blood_pressure_record(data: bytes, *, e2e_crc_present: bool = False) -> BloodPressureRecord:
    """Decode a Blood Pressure Record 0x2B36 segment.

    Args:
        data: the characteristic value.
        e2e_crc_present: True when the meter's Blood Pressure Feature has the E2E-CRC bit; the last
            two bytes of a record's last segment are then the CRC, not part of the recorded value.
    """
    try:
        reader = ByteReader(data)
        header = reader.uint8("segmentation header")
        sequence_number = reader.uint16("sequence number")
        recorded_uuid = reader.uint16("recorded characteristic UUID")
        rest = reader.rest()
        crc: int | None = None
        if e2e_crc_present and header & BP_RECORD_LAST_SEGMENT:
            if len(rest) < E2E_CRC_SIZE:
                raise DecodeError(BP_RECORD_VALUE_OFFSET, f"E2E-CRC needs 2 bytes, {len(rest)} left")
            rest, crc = rest[:-E2E_CRC_SIZE], int.from_bytes(rest[-E2E_CRC_SIZE:], "little")
    except DecodeError as error:
        raise error.with_characteristic("Blood Pressure Record") from None
    return BloodPressureRecord(
        bool(header & BP_RECORD_FIRST_SEGMENT),
        bool(header & BP_RECORD_LAST_SEGMENT),
        header >> BP_RECORD_COUNTER_SHIFT & BP_RECORD_COUNTER_MASK,
        sequence_number,
        recorded_uuid,
        rest,
        crc,
        bytes(data),
    )


def encode_blood_pressure_record(value: BloodPressureRecord) -> bytes:
    """Encode a Blood Pressure Record 0x2B36 segment (CRC appended when ``e2e_crc`` is set)."""
    if not 0 <= value.segment_counter <= BP_RECORD_COUNTER_MASK:
        raise EncodeError(f"segment counter {value.segment_counter} outside 0..63")
    header = value.segment_counter << BP_RECORD_COUNTER_SHIFT
    header |= BP_RECORD_FIRST_SEGMENT if value.first_segment else 0
    header |= BP_RECORD_LAST_SEGMENT if value.last_segment else 0
    out = (
        bytes((header,))
        + uint_le(value.sequence_number, 2, "sequence number")
        + uint_le(value.recorded_uuid, 2, "recorded UUID")
        + value.recorded_value
    )
    if value.e2e_crc is not None:
        out += uint_le(value.e2e_crc, 2, "E2E-CRC")
    return out


def crc16_mcrf4xx(data: bytes) -> int:
    """CRC-16/MCRF4XX (poly 0x1021 reflected, init 0xFFFF, no final XOR), the GATT E2E-CRC.

    Check value for b"123456789" is 0x6F91 (CRC catalogue). Used by BLS 1.1 / CGMS E2E-CRC
    (reference/ble-health-profiles.md §2.4).
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc
