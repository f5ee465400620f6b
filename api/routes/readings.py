"""A patient's readings as JSON: the raw series and daily aggregates (for trend charts).

Error readings are returned too, marked: `valid` false, or `excluded_from_summaries` true, with the
reasons as codes (alerts.summaries.ExclusionReason) for the web app to draw as markers with their
reason, never as a value. Daily aggregates count the patient's local days (their time zone, as the
rules and summaries do).

Each request is one audit entry ("read_readings", "read_daily_aggregates"; object: the patient),
written with the access check before the store is read: no trail, no readings (api/deps.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from alerts.summaries import DayAggregate, ExclusionReason, daily_figures, exclusion_reasons
from alerts.summary_updater import patient_settings
from api.deps import Services, patient_access
from api.errors import validation_error
from api.limits import BoundedDatetime
from storage.readings.protocol import AnyReading
from vitals.readings import BloodPressureReading, GlucoseReading, ReadingKind

router = APIRouter(prefix="/api/v1/patients/{patient_id}", tags=["readings"])

DEFAULT_WINDOW = timedelta(days=30)
MAX_READINGS = 10_000
MAX_DAYS = 366

ReadingsAccess = Annotated[str, Depends(patient_access("read_readings"))]
DailyAggregatesAccess = Annotated[str, Depends(patient_access("read_daily_aggregates"))]

_NOT_MEASUREMENTS: Final = (
    "When `valid` is false, the values are what the meter sent (often 0, or null after an error) and "
    "are not measurements: draw the reading as a marker with its `exclusion_reasons`, never as a value. "
    "`excluded_from_summaries` is also true for valid readings the cuff flagged unreliable (body "
    "movement, loose cuff, improper position): real values, left out of averages and summaries."
)


class _Marked(BaseModel):
    """What every returned reading carries beside the stored fields."""

    excluded_from_summaries: bool = Field(description="left out of every average and summary")
    exclusion_reasons: list[ExclusionReason] = Field(description="why, most telling first; empty if included")


class BloodPressureReadingOut(BloodPressureReading, _Marked):
    __doc__ = "A cuff measurement as stored. " + _NOT_MEASUREMENTS
    model_config = ConfigDict(frozen=True, extra="forbid")


class GlucoseReadingOut(GlucoseReading, _Marked):
    __doc__ = "A glucose meter record as stored. " + _NOT_MEASUREMENTS
    model_config = ConfigDict(frozen=True, extra="forbid")


ReadingOut = Annotated[BloodPressureReadingOut | GlucoseReadingOut, Field(discriminator="kind")]


def reading_out(reading: AnyReading) -> BloodPressureReadingOut | GlucoseReadingOut:
    """The stored reading with its exclusion marks (no re-validation: it was validated when stored)."""
    reasons = exclusion_reasons(reading)
    out_type = BloodPressureReadingOut if isinstance(reading, BloodPressureReading) else GlucoseReadingOut
    return out_type.model_construct(
        _fields_set={*reading.model_fields_set, "excluded_from_summaries", "exclusion_reasons"},
        **reading.__dict__,
        excluded_from_summaries=bool(reasons),
        exclusion_reasons=reasons,
    )


class ReadingList(BaseModel):
    patient_id: str
    kind: ReadingKind
    start: datetime
    end: datetime
    readings: list[ReadingOut]


@router.get("/readings")
async def list_readings(
    patient_id: ReadingsAccess,
    services: Services,
    kind: ReadingKind = ReadingKind.BLOOD_PRESSURE,
    start: Annotated[BoundedDatetime | None, Query(description="inclusive, default end - 30 days")] = None,
    end: Annotated[BoundedDatetime | None, Query(description="exclusive, default now")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS)] = 1000,
) -> ReadingList:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise validation_error("start", "range_reversed", "start must be before end", location="query")
    readings = await asyncio.to_thread(
        services.reading_store.query_range, patient_id, kind, start, end, limit=limit
    )
    return ReadingList(
        patient_id=patient_id, kind=kind, start=start, end=end, readings=[reading_out(r) for r in readings]
    )


class DailyReadings(BaseModel):
    patient_id: str
    kind: ReadingKind
    timezone: str = Field(description="the patient's time zone, whose calendar days these are")
    days: list[DayAggregate]


def _timezone(sessions: sessionmaker[Session], patient_id: str) -> str:
    with sessions() as session:
        return patient_settings(session, [patient_id])[patient_id].parameters.timezone


@router.get("/readings/daily")
async def daily_readings(
    patient_id: DailyAggregatesAccess,
    services: Services,
    kind: ReadingKind = ReadingKind.BLOOD_PRESSURE,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30,
) -> DailyReadings:
    """Per local day of the patient, the last `days` days (today included)."""
    zone_name = await asyncio.to_thread(_timezone, services.clinic_sessions, patient_id)
    zone = ZoneInfo(zone_name)
    last_day = datetime.now(zone).date()
    first_day: date = last_day - timedelta(days=days - 1)
    start = datetime.combine(first_day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    columns = await asyncio.to_thread(services.reading_store.reading_columns, patient_id, kind, start, end)
    figures = await asyncio.to_thread(daily_figures, columns, zone, first_day, last_day)
    return DailyReadings(patient_id=patient_id, kind=kind, timezone=zone_name, days=figures)
