"""Decoded values as plain JSON-ready dicts, and the registry of decodable profiles.

Field names say what a value is and carry the unit (``systolic_mmhg`` or ``systolic_kpa``,
``glucose_mg_dl`` or ``glucose_mmol_l``, ``pulse_bpm``); status bits appear by name; a special
IEEE-11073 value (NaN, NRes, ±INF, reserved) appears as ``null`` and is named in
``invalid_reasons``. Numbers keep the device's precision (exact decimals, printed as JSON numbers).
Used by ``vitalgate decode`` and by the vector tests. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .battery import decode_battery_level
from .blood_pressure import (
    BloodPressureMeasurement,
    EnhancedBloodPressureMeasurement,
    IntermediateCuffPressure,
    MeasurementPressureUnit,
    MeasurementStatus,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_blood_pressure_record,
    decode_enhanced_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from .errors import DecodeError
from .glucose import (
    GlucoseMeasurement,
    GlucoseMeasurementContext,
    decode_glucose_feature,
    decode_glucose_measurement,
    decode_glucose_measurement_context,
    flag_names,
)
from .ieee11073 import MderFloat
from .racp import RacpNumberOfRecords, RacpRequest, RacpResponse, decode_racp
from .time import CurrentTime, DateTime, decode_current_time, decode_date_time

JsonDict = dict[str, Any]

BP_RECORD_VALUE_OFFSET = 5
ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID16 = 0x2B34
BLOOD_PRESSURE_MEASUREMENT_UUID16 = 0x2A35


def number(value: Decimal | MderFloat | None) -> int | float | None:
    """A JSON number with the device's precision, or None for absent or special values."""
    if isinstance(value, MderFloat):
        value = value.to_decimal()
    if value is None:
        return None
    if value == value.to_integral_value() and value.as_tuple().exponent >= 0:  # type: ignore[operator]
        return int(value)
    return float(str(value))


def _name(value: enum.Enum | None) -> str | None:
    return None if value is None else str(value.name).lower()


def _unit_suffix(unit: MeasurementPressureUnit) -> str:
    return "mmhg" if unit is MeasurementPressureUnit.MMHG else "kpa"


def _status(status: MeasurementStatus | None) -> JsonDict:
    if status is None:
        return {"measurement_status": None, "pulse_rate_range": None}
    return {
        "measurement_status": [name for name in status.names if not name.startswith("pulse_rate_")],
        "pulse_rate_range": _name(status.pulse_rate_range),
    }


def _validity(
    value: BloodPressureMeasurement
    | EnhancedBloodPressureMeasurement
    | IntermediateCuffPressure
    | GlucoseMeasurement,
) -> JsonDict:
    return {"valid": value.valid, "invalid_reasons": list(value.invalid_reasons)}


def date_time_json(value: DateTime | None) -> str | None:
    """ISO 8601 local wall-clock text, or None when absent or incomplete."""
    return None if value is None else value.isoformat()


def blood_pressure_json(value: BloodPressureMeasurement) -> JsonDict:
    unit = _unit_suffix(value.unit)
    return {
        "characteristic": "blood_pressure_measurement",
        **_validity(value),
        "unit": value.unit.value,
        f"systolic_{unit}": number(value.systolic),
        f"diastolic_{unit}": number(value.diastolic),
        f"mean_arterial_pressure_{unit}": number(value.mean_arterial_pressure),
        "timestamp": date_time_json(value.timestamp),
        "pulse_bpm": number(value.pulse_rate_bpm),
        "user_id": value.user_id,
        **_status(value.measurement_status),
        "raw_hex": value.raw.hex(),
    }


def intermediate_cuff_pressure_json(value: IntermediateCuffPressure) -> JsonDict:
    return {
        "characteristic": "intermediate_cuff_pressure",
        **_validity(value),
        "unit": value.unit.value,
        f"cuff_pressure_{_unit_suffix(value.unit)}": number(value.cuff_pressure),
        "timestamp": date_time_json(value.timestamp),
        "pulse_bpm": number(value.pulse_rate_bpm),
        "user_id": value.user_id,
        **_status(value.measurement_status),
        "raw_hex": value.raw.hex(),
    }


def enhanced_blood_pressure_json(value: EnhancedBloodPressureMeasurement) -> JsonDict:
    unit = _unit_suffix(value.unit)
    time_stamp = value.time_stamp
    user_facing = value.user_facing_time
    return {
        "characteristic": "enhanced_blood_pressure_measurement",
        **_validity(value),
        "unit": value.unit.value,
        f"systolic_{unit}": number(value.systolic),
        f"diastolic_{unit}": number(value.diastolic),
        f"mean_arterial_pressure_{unit}": number(value.mean_arterial_pressure),
        "epoch_start_year": value.epoch_start_year,
        "time_stamp_seconds": value.time_stamp_seconds,
        "timestamp": None if time_stamp is None else time_stamp.isoformat(),
        "pulse_bpm": number(value.pulse_rate_bpm),
        "user_id": value.user_id,
        **_status(value.measurement_status),
        "user_facing_time_seconds": value.user_facing_time_seconds,
        "user_facing_time": None if user_facing is None else user_facing.isoformat(),
        "raw_hex": value.raw.hex(),
    }


def blood_pressure_record_json(data: bytes) -> JsonDict:
    record = decode_blood_pressure_record(data)
    recorded: JsonDict | None = None
    if record.is_complete and record.recorded_uuid in (
        ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID16,
        BLOOD_PRESSURE_MEASUREMENT_UUID16,
    ):
        try:
            if record.recorded_uuid == ENHANCED_BLOOD_PRESSURE_MEASUREMENT_UUID16:
                recorded = enhanced_blood_pressure_json(
                    decode_enhanced_blood_pressure_measurement(record.recorded_value)
                )
            else:
                recorded = blood_pressure_json(decode_blood_pressure_measurement(record.recorded_value))
        except DecodeError as error:
            raise DecodeError(
                BP_RECORD_VALUE_OFFSET + error.offset,
                f"recorded value: {error.reason}",
                characteristic="Blood Pressure Record",
            ) from None
    return {
        "characteristic": "blood_pressure_record",
        "first_segment": record.first_segment,
        "last_segment": record.last_segment,
        "segment_counter": record.segment_counter,
        "sequence_number": record.sequence_number,
        "recorded_uuid": f"0x{record.recorded_uuid:04X}",
        "recorded_value_hex": record.recorded_value.hex(),
        "recorded": recorded,
        "raw_hex": record.raw.hex(),
    }


def glucose_json(value: GlucoseMeasurement) -> JsonDict:
    out: JsonDict = {
        "characteristic": "glucose_measurement",
        **_validity(value),
        "sequence_number": value.sequence_number,
        "base_time": date_time_json(value.base_time),
        "time_offset_minutes": value.time_offset_minutes,
        "user_facing_time": None if value.user_facing_time is None else value.user_facing_time.isoformat(),
        "unit": None if value.unit is None else value.unit.value,
    }
    if value.glucose_mmol_l is not None or (value.unit is not None and value.unit.value == "mol/L"):
        out["glucose_mmol_l"] = number(value.glucose_mmol_l)
    else:
        out["glucose_mg_dl"] = number(value.glucose_mg_dl)
    out.update(
        {
            "sample_type": _name(value.sample_type),
            "sample_location": _name(value.sample_location),
            "sensor_status": None if value.sensor_status is None else list(flag_names(value.sensor_status)),
            "context_follows": value.context_follows,
            "raw_hex": value.raw.hex(),
        }
    )
    return out


def glucose_context_json(value: GlucoseMeasurementContext) -> JsonDict:
    medication_key = (
        "medication_kg"
        if value.medication_unit is None or value.medication_unit.value == "kg"
        else ("medication_l")
    )
    return {
        "characteristic": "glucose_measurement_context",
        "sequence_number": value.sequence_number,
        "extended_flags": value.extended_flags,
        "carbohydrate_id": _name(value.carbohydrate_id),
        "carbohydrate_kg": number(value.carbohydrate_kg),
        "meal": _name(value.meal),
        "tester": _name(value.tester),
        "health": _name(value.health),
        "exercise_duration_seconds": value.exercise_duration_seconds,
        "exercise_intensity_percent": value.exercise_intensity_percent,
        "medication_id": _name(value.medication_id),
        medication_key: number(value.medication),
        "hba1c_percent": number(value.hba1c_percent),
        "raw_hex": value.raw.hex(),
    }


def racp_json(value: RacpRequest | RacpResponse | RacpNumberOfRecords) -> JsonDict:
    if isinstance(value, RacpResponse):
        return {
            "characteristic": "record_access_control_point",
            "kind": "response",
            "request_opcode": _name(value.request_opcode),
            "response_code": _name(value.response_code),
        }
    if isinstance(value, RacpNumberOfRecords):
        return {
            "characteristic": "record_access_control_point",
            "kind": "number_of_records",
            "number_of_records": value.number_of_records,
        }

    def operand(part: int | DateTime | None) -> int | str | None:
        return date_time_json(part) if isinstance(part, DateTime) else part

    return {
        "characteristic": "record_access_control_point",
        "kind": "request",
        "opcode": _name(value.opcode),
        "operator": _name(value.operator),
        "filter_type": _name(value.filter_type),
        "minimum": operand(value.minimum),
        "maximum": operand(value.maximum),
    }


def date_time_fields_json(value: DateTime) -> JsonDict:
    return {
        "date_time": date_time_json(value),
        "year": value.year,
        "month": value.month,
        "day": value.day,
        "hours": value.hours,
        "minutes": value.minutes,
        "seconds": value.seconds,
    }


def current_time_json(value: CurrentTime) -> JsonDict:
    return {
        "characteristic": "current_time",
        **date_time_fields_json(value.date_time),
        "day_of_week": _name(value.day_of_week),
        "fractions256": value.fractions256,
        "adjust_reason": list(flag_names(value.adjust_reason)),
    }


def _features(decoded: enum.IntFlag, characteristic: str) -> JsonDict:
    return {
        "characteristic": characteristic,
        "features": list(flag_names(decoded)),
        "raw_value": int(decoded),
    }


PROFILES: dict[str, Callable[[bytes], JsonDict]] = {
    "bp": lambda data: blood_pressure_json(decode_blood_pressure_measurement(data)),
    "icp": lambda data: intermediate_cuff_pressure_json(decode_intermediate_cuff_pressure(data)),
    "bp-feature": lambda data: _features(decode_blood_pressure_feature(data), "blood_pressure_feature"),
    "bp-enhanced": lambda data: enhanced_blood_pressure_json(
        decode_enhanced_blood_pressure_measurement(data)
    ),
    "bp-record": blood_pressure_record_json,
    "glucose": lambda data: glucose_json(decode_glucose_measurement(data)),
    "glucose-context": lambda data: glucose_context_json(decode_glucose_measurement_context(data)),
    "glucose-feature": lambda data: _features(decode_glucose_feature(data), "glucose_feature"),
    "racp": lambda data: racp_json(decode_racp(data)),
    "date-time": lambda data: {
        "characteristic": "date_time",
        **date_time_fields_json(decode_date_time(data)),
    },
    "current-time": lambda data: current_time_json(decode_current_time(data)),
    "battery": lambda data: {
        "characteristic": "battery_level",
        "battery_level_percent": decode_battery_level(data).percent,
    },
}
"""Profile name (as typed on the command line) -> decoder returning a JSON-ready dict."""
