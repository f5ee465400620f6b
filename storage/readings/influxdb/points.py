"""The InfluxDB point of one reading, as line protocol (pure; docs/storage-schema.md): measurement,
the `patient_id` tag, the fields, and the timestamp with its per-reading sub-second offset."""

from __future__ import annotations

import math
from typing import Final

from storage.readings.protocol import AnyReading
from storage.readings.records import epoch_us, in_averages, reading_to_json
from vitals.readings import BloodPressureReading, BloodPressureStatus, ReadingKind, SampleLocation, SampleType

NS_PER_S: Final = 1_000_000_000
NS_PER_US: Final = 1_000


# Hex digits of the reading_id hashed into the sub-second timestamp offset (64 bits).
_TIEBREAK_HEX_DIGITS: Final = 16


JSON_FIELD: Final = "reading_json"


def point_time_ns(reading: AnyReading) -> int:
    """measured_at's whole second, plus a per-reading offset in [0, 1 s) from the reading_id."""
    return (epoch_us(reading.measured_at) // 1_000_000) * NS_PER_S + _tiebreak_ns(reading.reading_id)


# The point's fields (docs/storage-schema.md, "Fields"). The whole reading is the string field
# `reading_json`, which every read returns; beside it only what InfluxQL itself needs: the duplicate
# probe's `reading_id`, the exact time, the flags the aggregates and `valid_only` filter on, and the
# values in canonical units that daily aggregates (AGGREGATED_METRICS) and Grafana average. influxd's
# CPU grows with the fields per point, and influxd shares the gateway's or clinic's cores with ingest,
# so a point carries nothing that only a read of `reading_json` needs.
BLOOD_PRESSURE_FIELDS: Final = ("systolic_mmhg", "diastolic_mmhg", "mean_arterial_mmhg", "pulse_bpm")
GLUCOSE_FIELDS: Final = ("glucose_mg_dl", "meal")
COMMON_FIELDS: Final = ("reading_id", "measured_at_us", "valid", "in_averages")
# Flags the alert rules read of every reading (`history_columns`), written only when true (absent:
# false), so the common reading carries no extra field: a blood pressure with an irregular pulse, a
# glucose from a continuous monitor (interstitial fluid or subcutaneous tissue).
IRREGULAR_PULSE_FIELD: Final = "irregular_pulse"
CONTINUOUS_FIELD: Final = "continuous"


def line_protocol(reading: AnyReading) -> str:
    """The reading's point as one line of InfluxDB line protocol (nanosecond timestamp).

    Escaping per the line protocol reference: measurement, tag keys/values and field keys escape
    commas, spaces (and, except the measurement, equals signs); string field values escape
    backslashes and double quotes. Line protocol has no newline escape, and needs none: the only
    free text is reading_json, compact JSON, which never contains a raw line break.

    Fields: COMMON_FIELDS, then the kind's (BLOOD_PRESSURE_FIELDS or GLUCOSE_FIELDS) where the
    reading has a value, then `reading_json`. Numbers are always floats (`i` for the integer
    `measured_at_us`), so no field type conflict can arise between readings.
    """
    head = _MEASUREMENTS[reading.kind]
    if reading.patient_id is not None:
        head += ",patient_id=" + _escape_key(reading.patient_id)
    measured_at_us = epoch_us(reading.measured_at)
    fields = [
        f'reading_id="{reading.reading_id}"',  # 32 hex digits (vitals.readings): nothing to escape
        f"measured_at_us={measured_at_us}i",
        "valid=true" if reading.valid else "valid=false",
        "in_averages=true" if in_averages(reading) else "in_averages=false",
    ]
    if isinstance(reading, BloodPressureReading):
        _add_float(fields, "systolic_mmhg", reading.systolic_mmhg)
        _add_float(fields, "diastolic_mmhg", reading.diastolic_mmhg)
        _add_float(fields, "mean_arterial_mmhg", reading.mean_arterial_mmhg)
        _add_float(fields, "pulse_bpm", reading.pulse_bpm)
        if BloodPressureStatus.IRREGULAR_PULSE in reading.measurement_status:
            fields.append(f"{IRREGULAR_PULSE_FIELD}=true")
    else:
        _add_float(fields, "glucose_mg_dl", reading.glucose_mg_dl)
        if reading.context is not None and reading.context.meal is not None:
            fields.append(f'meal="{reading.context.meal.value}"')  # a Meal value: nothing to escape
        if (
            reading.sample_type is SampleType.INTERSTITIAL_FLUID
            or reading.sample_location is SampleLocation.SUBCUTANEOUS_TISSUE
        ):
            fields.append(f"{CONTINUOUS_FIELD}=true")
    reading_json = reading_to_json(reading)
    # JSON escapes every control character itself (RFC 8259 §7), so only `\` and `"` remain.
    fields.append(f'{JSON_FIELD}="{_json_string(reading_json)}"')
    time_ns = (measured_at_us // 1_000_000) * NS_PER_S + _tiebreak_ns(reading.reading_id)
    return f"{head} {','.join(fields)} {time_ns}"


_MEASUREMENTS: Final = {kind: kind.value.replace(",", "\\,").replace(" ", "\\ ") for kind in ReadingKind}


def _tiebreak_ns(reading_id: str) -> int:
    return int(reading_id[:_TIEBREAK_HEX_DIGITS], 16) % NS_PER_S


def _json_string(text: str) -> str:
    """Compact JSON as a string field value (the quotes around it are the caller's): JSON holds no
    raw line break, so escaping backslashes and double quotes is all line protocol needs."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _add_float(fields: list[str], name: str, value: float | None) -> None:
    """Finite values only (InfluxDB has no NaN), always written as a float, never an int (which
    would be a field type conflict with the earlier points)."""
    if value is not None and math.isfinite(value):
        fields.append(f"{name}={float(value)!r}")


def _escape_key(text: str, *, measurement: bool = False) -> str:
    # Our keys are fixed names, kind values and patient ids ([A-Za-z0-9_-]): never a backslash.
    text = text.replace(",", "\\,").replace(" ", "\\ ")
    return text if measurement else text.replace("=", "\\=")
