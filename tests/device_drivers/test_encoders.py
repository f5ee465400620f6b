"""Encoders checked against the published bytes, then round-tripped for every field combination.

Round trips alone are not evidence (style-models.md §7), so the first tests re-encode values decoded
from the vector files and compare with the source's bytes, and the RACP/Current Time constructors are
compared with the reference's literal examples.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.profiles import battery, blood_pressure, glucose, racp, time
from device_drivers.profiles.errors import EncodeError
from device_drivers.profiles.ieee11073 import (
    MderFloat,
    SpecialValue,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)

VECTORS = Path(__file__).parent / "vectors"

CODECS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "bp": (
        blood_pressure.decode_blood_pressure_measurement,
        blood_pressure.encode_blood_pressure_measurement,
    ),
    "bp-feature": (
        blood_pressure.decode_blood_pressure_feature,
        blood_pressure.encode_blood_pressure_feature,
    ),
    "bp-enhanced": (
        blood_pressure.decode_enhanced_blood_pressure_measurement,
        blood_pressure.encode_enhanced_blood_pressure_measurement,
    ),
    "bp-record": (blood_pressure.decode_blood_pressure_record, blood_pressure.encode_blood_pressure_record),
    "icp": (
        blood_pressure.decode_intermediate_cuff_pressure,
        blood_pressure.encode_intermediate_cuff_pressure,
    ),
    "glucose": (glucose.decode_glucose_measurement, glucose.encode_glucose_measurement),
    "glucose-context": (
        glucose.decode_glucose_measurement_context,
        glucose.encode_glucose_measurement_context,
    ),
    "glucose-feature": (glucose.decode_glucose_feature, glucose.encode_glucose_feature),
    "racp": (racp.decode_racp, lambda v: _encode_racp(v)),
    "date-time": (time.decode_date_time, time.encode_date_time),
    "current-time": (time.decode_current_time, time.encode_current_time),
    "battery": (battery.decode_battery_level, battery.encode_battery_level),
}


def _encode_racp(value: racp.RacpRequest | racp.RacpResponse | racp.RacpNumberOfRecords) -> bytes:
    if isinstance(value, racp.RacpRequest):
        return racp.encode_racp_request(value)
    return racp.encode_racp_response(value)


def _vector_cases() -> list[Any]:
    cases = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text())
        if "profile" not in data:
            continue
        for index, vector in enumerate(data["vectors"]):
            cases.append(pytest.param(data["profile"], vector["hex"], id=f"{data['profile']}-{index}"))
    return cases


@pytest.mark.parametrize(("profile", "hex_value"), _vector_cases())
def test_encoder_reproduces_source_bytes(profile: str, hex_value: str) -> None:
    """Encoding what a published vector decodes to gives back the published bytes."""
    decode, encode = CODECS[profile]
    data = bytes.fromhex(hex_value)
    assert encode(decode(data)) == data


@pytest.mark.parametrize(
    ("request_value", "expected_hex"),
    [
        (racp.RacpRequest.report_all_records(), "01 01"),
        (racp.RacpRequest.report_records_from(0x0123), "01 03 01 23 01"),
        (racp.RacpRequest.report_number_of_records(), "04 01"),
        (racp.RacpRequest.abort_operation(), "03 00"),
        (racp.RacpRequest.report_last_record(), "01 06"),
        (racp.RacpRequest.report_first_record(), "01 05"),
        (racp.RacpRequest.delete_all_records(), "02 01"),
        (racp.RacpRequest.report_records_in_range(5, 10), "01 04 01 05 00 0A 00"),
    ],
)
def test_racp_requests_match_reference_examples(request_value: racp.RacpRequest, expected_hex: str) -> None:
    """RACP requests are byte-for-byte the reference's examples (§2.3)."""
    assert racp.encode_racp_request(request_value) == bytes.fromhex(expected_hex)


def test_racp_responses_match_reference_examples() -> None:
    """Success and no-records-found indications are `06 00 01 01` and `06 00 01 06`."""
    success = racp.RacpResponse(racp.RacpOpcode.REPORT_STORED_RECORDS, racp.RacpResponseCode.SUCCESS)
    none = racp.RacpResponse(racp.RacpOpcode.REPORT_STORED_RECORDS, racp.RacpResponseCode.NO_RECORDS_FOUND)
    assert racp.encode_racp_response(success) == bytes.fromhex("06 00 01 01")
    assert racp.encode_racp_response(none) == bytes.fromhex("06 00 01 06")
    assert racp.encode_racp_response(racp.RacpNumberOfRecords(42)) == bytes.fromhex("05 00 2A 00")


def test_current_time_written_by_collector() -> None:
    """Friday 2024-03-01 08:30:00.5 becomes E8 07 03 01 08 1E 00 05 80 02 (day of week 5, 128/256 s)."""
    value = time.CurrentTime.from_datetime(dt.datetime(2024, 3, 1, 8, 30, 0, 500_000))
    assert time.encode_current_time(value) == bytes.fromhex("E8 07 03 01 08 1E 00 05 80 02")


def test_local_time_information() -> None:
    """UTC+1 with DST (+1 h) is 04 04 and means a two-hour offset; -128 is an unknown zone."""
    info = time.decode_local_time_information(bytes.fromhex("04 04"))
    assert info.utc_offset == dt.timedelta(hours=2)
    assert time.encode_local_time_information(info) == bytes.fromhex("04 04")
    assert time.decode_local_time_information(bytes.fromhex("80 FF")).utc_offset is None


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (MderFloat.from_decimal("2.0"), "14 F0"),
        (MderFloat.from_decimal(120), "78 00"),
        (MderFloat.from_decimal("-1234"), "2E 0B"),
        (MderFloat.from_decimal(4000), "90 11"),
        (MderFloat.of(SpecialValue.NAN), "FF 07"),
        (MderFloat.of(SpecialValue.NEGATIVE_INFINITY), "02 08"),
    ],
)
def test_sfloat_encoder(value: MderFloat, expected_hex: str) -> None:
    """SFLOAT encoding matches HL7 PHD examples; 4000 drops a trailing zero (400e1) to fit 12 bits."""
    assert encode_sfloat(value) == bytes.fromhex(expected_hex)


@pytest.mark.parametrize("value", ["2047", "1.2345", "-2048"])
def test_sfloat_encoder_refuses_what_does_not_fit(value: str) -> None:
    """A number needing more than 12 mantissa bits, or colliding with a special code, is an EncodeError."""
    with pytest.raises(EncodeError):
        encode_sfloat(MderFloat.from_decimal(value))


def test_float_encoder() -> None:
    """FLOAT 2.0 is 0xFF000014 (HL7 PHD)."""
    assert encode_float(MderFloat.from_decimal("2.0")) == bytes.fromhex("14 00 00 FF")


def test_crc16_mcrf4xx_check_value() -> None:
    """CRC-16/MCRF4XX of '123456789' is 0x6F91 (CRC catalogue check value)."""
    assert blood_pressure.crc16_mcrf4xx(b"123456789") == 0x6F91


# --- property round trips -------------------------------------------------------------------

finite_sfloats = st.builds(MderFloat, st.integers(-2045, 2045), st.integers(-8, 7)).filter(
    lambda v: v.exponent != 0 or -2045 <= v.mantissa <= 2045
)
specials = st.sampled_from(list(SpecialValue)).map(MderFloat.of)
sfloats = st.one_of(finite_sfloats, specials)
date_times = st.datetimes(min_value=dt.datetime(1582, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
    time.DateTime.from_datetime
)
statuses = st.builds(
    blood_pressure.MeasurementStatus.of,
    st.builds(blood_pressure.MeasurementStatusFlag, st.sampled_from([0, 1, 2, 4, 0x20, 0x27])),
    st.sampled_from(list(blood_pressure.PulseRateRange)),
)


def _canonical(value: MderFloat) -> MderFloat:
    """Trailing zeros may move into the exponent; compare numerically via the decoder."""
    return decode_sfloat(encode_sfloat(value))


@settings(max_examples=200, deadline=None)
@given(
    unit=st.sampled_from(list(blood_pressure.MeasurementPressureUnit)),
    values=st.tuples(sfloats, sfloats, sfloats),
    timestamp=st.none() | date_times,
    pulse=st.none() | sfloats,
    user_id=st.none() | st.integers(0, 255),
    status=st.none() | statuses,
)
def test_blood_pressure_round_trip(
    unit: Any, values: Any, timestamp: Any, pulse: Any, user_id: Any, status: Any
) -> None:
    """Every combination of BPM flags survives encode then decode."""
    systolic, diastolic, mean = (_canonical(v) for v in values)
    value = blood_pressure.BloodPressureMeasurement(
        unit,
        systolic,
        diastolic,
        mean,
        timestamp,
        None if pulse is None else _canonical(pulse),
        user_id,
        status,
    )
    encoded = blood_pressure.encode_blood_pressure_measurement(value)
    assert blood_pressure.BPM_MIN_SIZE <= len(encoded) <= blood_pressure.BPM_MAX_SIZE
    assert blood_pressure.decode_blood_pressure_measurement(encoded) == value


@settings(max_examples=200, deadline=None)
@given(
    sequence_number=st.integers(0, 0xFFFF),
    base_time=date_times,
    offset=st.none() | st.integers(-32768, 32767),
    concentration=st.none() | sfloats,
    unit=st.sampled_from(list(glucose.GlucoseConcentrationUnit)),
    sample_type=st.integers(0, 15),
    location=st.integers(0, 15),
    status=st.none() | st.integers(0, 0xFFFF),
    context=st.booleans(),
)
def test_glucose_round_trip(
    sequence_number: int,
    base_time: Any,
    offset: Any,
    concentration: Any,
    unit: Any,
    sample_type: int,
    location: int,
    status: Any,
    context: bool,
) -> None:
    """Every combination of Glucose Measurement flags survives encode then decode."""
    present = concentration is not None
    value = glucose.GlucoseMeasurement(
        sequence_number,
        base_time,
        offset,
        _canonical(concentration) if present else None,
        unit if present else None,
        glucose.GlucoseSampleType(sample_type) if present else None,
        glucose.GlucoseSampleLocation(location) if present else None,
        None if status is None else glucose.SensorStatusFlag(status),
        context,
    )
    assert glucose.decode_glucose_measurement(glucose.encode_glucose_measurement(value)) == value


@settings(max_examples=200, deadline=None)
@given(
    minimum=st.integers(0, 0xFFFF),
    span=st.integers(0, 0xFFFF),
    operator=st.sampled_from(list(racp.RacpOperator)),
    opcode=st.sampled_from(
        [
            racp.RacpOpcode.REPORT_STORED_RECORDS,
            racp.RacpOpcode.DELETE_STORED_RECORDS,
            racp.RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
        ]
    ),
)
def test_racp_request_round_trip(minimum: int, span: int, operator: Any, opcode: Any) -> None:
    """Every record operator on sequence numbers survives encode then decode."""
    maximum = min(minimum + span, 0xFFFF)
    kwargs: dict[str, Any] = {}
    if operator is racp.RacpOperator.NULL:
        return
    if operator in (
        racp.RacpOperator.LESS_THAN_OR_EQUAL_TO,
        racp.RacpOperator.GREATER_THAN_OR_EQUAL_TO,
        racp.RacpOperator.WITHIN_RANGE_OF,
    ):
        kwargs["filter_type"] = racp.RacpFilterType.SEQUENCE_NUMBER
        if operator is not racp.RacpOperator.LESS_THAN_OR_EQUAL_TO:
            kwargs["minimum"] = minimum
        if operator is not racp.RacpOperator.GREATER_THAN_OR_EQUAL_TO:
            kwargs["maximum"] = maximum
    request = racp.RacpRequest(opcode, operator, **kwargs)
    assert racp.decode_racp_request(racp.encode_racp_request(request)) == request


@settings(max_examples=100, deadline=None)
@given(value=st.integers(-(2**23) + 3, 2**23 - 3), exponent=st.integers(-128, 127))
def test_float_round_trip(value: int, exponent: int) -> None:
    """FLOAT round trip over the full exponent range."""
    number = MderFloat(value, exponent)
    if exponent == 0 and abs(value) >= 2**23 - 2:
        return
    decoded = decode_float(encode_float(number))
    assert decoded.to_decimal() == number.to_decimal()


contexts = st.builds(
    glucose.GlucoseMeasurementContext,
    sequence_number=st.integers(0, 0xFFFF),
    extended_flags=st.none() | st.integers(0, 255),
    meal=st.none() | st.integers(0, 255).map(glucose.MealCode),
    hba1c_percent=st.none() | finite_sfloats.map(_canonical),
    exercise_duration_seconds=st.none(),
    exercise_intensity_percent=st.none(),
)


@settings(max_examples=200, deadline=None)
@given(
    context=contexts,
    carbohydrate=st.none() | st.tuples(st.integers(0, 255).map(glucose.CarbohydrateCode), finite_sfloats),
    tester_health=st.none() | st.tuples(st.integers(0, 15), st.integers(0, 15)),
    exercise=st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255)),
    medication=st.none()
    | st.tuples(
        st.integers(0, 255).map(glucose.MedicationCode),
        finite_sfloats,
        st.sampled_from(list(glucose.MedicationUnit)),
    ),
)
def test_glucose_context_round_trip(
    context: glucose.GlucoseMeasurementContext,
    carbohydrate: Any,
    tester_health: Any,
    exercise: Any,
    medication: Any,
) -> None:
    """Every combination of context fields (including reserved codes) survives encode then decode."""
    value = dataclasses.replace(
        context,
        carbohydrate_id=None if carbohydrate is None else carbohydrate[0],
        carbohydrate_kg=None if carbohydrate is None else _canonical(carbohydrate[1]),
        tester=None if tester_health is None else glucose.TesterCode(tester_health[0]),
        health=None if tester_health is None else glucose.HealthCode(tester_health[1]),
        exercise_duration_seconds=None if exercise is None else exercise[0],
        exercise_intensity_percent=None if exercise is None else exercise[1],
        medication_id=None if medication is None else medication[0],
        medication=None if medication is None else _canonical(medication[1]),
        medication_unit=None if medication is None else medication[2],
    )
    encoded = glucose.encode_glucose_measurement_context(value)
    assert glucose.decode_glucose_measurement_context(encoded) == value


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(1582, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    reason=st.integers(0, 255),
)
def test_current_time_round_trip(moment: dt.datetime, reason: int) -> None:
    """Current Time from any datetime encodes and decodes to the same wall clock and weekday."""
    value = time.CurrentTime.from_datetime(moment, time.AdjustReason(reason))
    decoded = time.decode_current_time(time.encode_current_time(value))
    assert decoded == value
    assert decoded.date_time.to_datetime() == moment.replace(microsecond=0)
    assert int(decoded.day_of_week) == moment.isoweekday()


@settings(max_examples=200, deadline=None)
@given(
    values=st.tuples(sfloats, sfloats, sfloats),
    stamp=st.none() | st.integers(0, 2**32 - 1),
    user_facing=st.none() | st.integers(0, 2**32 - 1),
    epoch=st.sampled_from([1900, 2000]),
    user_id=st.none() | st.integers(0, 255),
    status=st.none() | statuses,
    pulse=st.none() | sfloats,
)
def test_enhanced_blood_pressure_round_trip(
    values: Any, stamp: Any, user_facing: Any, epoch: int, user_id: Any, status: Any, pulse: Any
) -> None:
    """Every combination of Enhanced BPM (BLS 1.1) flags survives encode then decode."""
    systolic, diastolic, mean = (_canonical(v) for v in values)
    value = blood_pressure.EnhancedBloodPressureMeasurement(
        blood_pressure.MeasurementPressureUnit.MMHG,
        systolic,
        diastolic,
        mean,
        stamp,
        None if pulse is None else _canonical(pulse),
        user_id,
        status,
        user_facing,
        epoch,
    )
    encoded = blood_pressure.encode_enhanced_blood_pressure_measurement(value)
    assert blood_pressure.decode_enhanced_blood_pressure_measurement(encoded) == value
