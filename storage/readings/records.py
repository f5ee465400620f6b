"""Pure helpers shared by the reading stores: flattening a reading, time formats, daily aggregation.

No I/O here, so each piece is testable without a database (style-models.md §5: Home Assistant's
influxdb integration keeps its record builder a pure function).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final

from pydantic import TypeAdapter

from storage.readings.protocol import AnyReading, DailyAggregate, MetricSummary
from vitals.readings import BloodPressureReading, GlucoseReading, Reading, ReadingKind

_READING_ADAPTER: Final[TypeAdapter[AnyReading]] = TypeAdapter(Reading)

# Patient ids are opaque ids with the same pattern as in vitals.readings / vitals.payload; checking
# it before a query also rules out any quoting trouble in InfluxQL string literals.
PATIENT_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Canonical quantities summarised per day, by kind: mean/min/max of systolic, diastolic, pulse or
# glucose_mg_dl.
AGGREGATED_METRICS: Final[Mapping[ReadingKind, tuple[str, ...]]] = {
    ReadingKind.BLOOD_PRESSURE: ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm"),
    ReadingKind.GLUCOSE: ("glucose_mg_dl",),
}

# Fixed-width UTC text: lexicographic order is chronological order, so SQLite can index and compare
# it as text.
_UTC_TEXT_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def check_patient_id(patient_id: str) -> str:
    if not PATIENT_ID_PATTERN.fullmatch(patient_id):
        raise ValueError("patient_id must be an opaque id matching [A-Za-z0-9_-]{1,64}")
    return patient_id


def check_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def utc_text(moment: datetime) -> str:
    """Aware datetime -> fixed-width UTC text, microsecond precision."""
    return moment.astimezone(UTC).strftime(_UTC_TEXT_FORMAT)


UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Aware datetime -> integer microseconds since the Unix epoch (exact, no float rounding).

    Aware datetimes subtract by their UTC instants whatever their zones, so no conversion first;
    this runs for every reading a store writes."""
    delta = moment - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=value)


def in_averages(reading: AnyReading) -> bool:
    """Whether a reading may enter averages (clinical-rules.md §7, DQ-02)."""
    if isinstance(reading, BloodPressureReading):
        return not reading.excluded_from_averages
    return reading.valid


def reading_to_json(reading: AnyReading) -> str:
    """The reading as both stores keep it: compact JSON, through the model's serializer directly,
    without model_dump_json's Python wrapper (this runs for every reading written)."""
    return type(reading).__pydantic_serializer__.to_json(reading).decode()


def reading_from_json(text: str | bytes) -> AnyReading:
    return _READING_ADAPTER.validate_json(text)


def sort_key(reading: AnyReading) -> tuple[datetime, str]:
    return (reading.measured_at, reading.reading_id)


def metric_values(reading: AnyReading) -> dict[str, float | None]:
    """The canonical quantities of a reading that daily aggregates summarise."""
    if isinstance(reading, BloodPressureReading):
        return {
            "systolic_mmhg": reading.systolic_mmhg,
            "diastolic_mmhg": reading.diastolic_mmhg,
            "pulse_bpm": reading.pulse_bpm,
        }
    assert isinstance(reading, GlucoseReading)
    return {"glucose_mg_dl": reading.glucose_mg_dl}


def json_list(values: Iterable[str]) -> str:
    """A compact JSON array (callers sort sets first so the text is stable)."""
    return json.dumps(list(values), separators=(",", ":"))


def day_window(first_day: date, last_day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """UTC [start, end) covering local days first_day..last_day in `tz`."""
    if last_day < first_day:
        raise ValueError("last_day is before first_day")
    start = datetime.combine(first_day, time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
    return start, end


@dataclass(slots=True)
class AggregateRow:
    """What daily aggregation needs of one reading."""

    measured_at: datetime
    included: bool
    values: Mapping[str, float | None]


def aggregate_daily(
    patient_id: str, kind: ReadingKind, rows: Iterable[AggregateRow], tz: tzinfo
) -> list[DailyAggregate]:
    """Group rows by local day in `tz` and summarise the included ones, days in ascending order.

    Done in Python for both stores so that both give the same answer, DST days included (InfluxQL's
    `GROUP BY time(1d) tz(...)` and SQLite's date() differ in how they treat local days). A patient
    has a handful of readings a day, so a year is a few thousand rows.
    """
    metrics = AGGREGATED_METRICS[kind]
    per_day: dict[date, tuple[list[int], dict[str, list[float]]]] = {}
    isfinite = math.isfinite
    for row in rows:
        day = row.measured_at.astimezone(tz).date()
        entry = per_day.get(day)
        if entry is None:
            entry = per_day[day] = ([0, 0], {m: [] for m in metrics})
        counts, values = entry
        if not row.included:
            counts[1] += 1
            continue
        counts[0] += 1
        for metric in metrics:
            value = row.values.get(metric)
            if value is not None and isfinite(value):
                values[metric].append(float(value))
    result = []
    for day in sorted(per_day):
        (included, excluded), values = per_day[day]
        summaries = {metric: _summary(vals) for metric, vals in values.items()}
        result.append(
            DailyAggregate(
                patient_id=patient_id,
                kind=kind,
                day=day,
                count=included,
                excluded_count=excluded,
                systolic_mmhg=summaries.get("systolic_mmhg"),
                diastolic_mmhg=summaries.get("diastolic_mmhg"),
                pulse_bpm=summaries.get("pulse_bpm"),
                glucose_mg_dl=summaries.get("glucose_mg_dl"),
            )
        )
    return result


def _summary(values: list[float]) -> MetricSummary | None:
    if not values:
        return None
    mean = math.fsum(values) / len(values)
    return MetricSummary(count=len(values), mean=mean, min=min(values), max=max(values))
