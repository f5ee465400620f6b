"""A patient's summary of a period: the patient page's and the reports' figures."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from alerts.profiles import RuleParameters
from alerts.summaries.blood_pressure import BloodPressureSummary, blood_pressure_summary
from alerts.summaries.glucose import GlucoseSummary, glucose_summary
from alerts.summaries.local_days import MIN_QUERY_DAYS, LocalDays, ReadingSeries, days_with_data_30
from storage.readings.protocol import ReadingColumns


class Period(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime = Field(description="local midnight of the first day, as UTC")
    end: datetime = Field(description="the moment the summary was computed for")
    days: int
    timezone: str


class PatientSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    patient_id: str
    period: Period
    blood_pressure: BloodPressureSummary
    glucose: GlucoseSummary
    days_with_data_30: int


def summarize(
    patient_id: str,
    blood_pressure: ReadingColumns,
    glucose: ReadingColumns,
    params: RuleParameters,
    *,
    now: datetime,
    days: int,
) -> PatientSummary:
    """The patient page's summary of the `days` local days ending at `now` (today included), from the
    store's columns over at least `query_window(params, now, days)`."""
    if days < 1:
        raise ValueError("days must be at least 1")
    zone = ZoneInfo(params.timezone)
    today = now.astimezone(zone).date()
    local = LocalDays.ending(zone, today, max(days, MIN_QUERY_DAYS))
    first = local.count - days
    end_s = now.timestamp()
    bp = ReadingSeries.of(blood_pressure, local, end_s)
    glu = ReadingSeries.of(glucose, local, end_s)
    start_s = float(local.starts_s[first])
    return PatientSummary(
        patient_id=patient_id,
        period=Period(
            start=datetime.fromtimestamp(start_s, UTC),
            end=now.astimezone(UTC),
            days=days,
            timezone=params.timezone,
        ),
        blood_pressure=blood_pressure_summary(bp, local, first, params),
        glucose=glucose_summary(glu, local, first, params, start_s, end_s),
        days_with_data_30=days_with_data_30((bp, glu), local),
    )
