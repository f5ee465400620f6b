"""Figures per local day: the trend chart's count, excluded count, mean, min and max of each quantity."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict

from alerts.summaries.local_days import FloatArray, IntArray, LocalDays
from storage.readings.protocol import ReadingColumns


class MetricDay(BaseModel):
    """One quantity's valid readings on one day."""

    model_config = ConfigDict(frozen=True)

    count: int
    mean: float
    min: float
    max: float


class DayAggregate(BaseModel):
    """One local day: `count` readings entered the figures, `excluded_count` were left out (invalid,
    or flagged by the cuff). A quantity is null when no included reading carried it."""

    model_config = ConfigDict(frozen=True)

    day: date
    count: int
    excluded_count: int
    systolic_mmhg: MetricDay | None = None
    diastolic_mmhg: MetricDay | None = None
    pulse_bpm: MetricDay | None = None
    glucose_mg_dl: MetricDay | None = None


def _metric_days(values: FloatArray, day: IntArray, count: int) -> list[MetricDay | None]:
    """Count, mean, min and max per day of the finite `values` (`day` ascending)."""
    out: list[MetricDay | None] = [None] * count
    ok = np.isfinite(values)
    values, day = values[ok], day[ok]
    if values.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    n = np.diff(np.r_[starts, values.size])
    means = (np.add.reduceat(values, starts) / n).tolist()
    lows = np.minimum.reduceat(values, starts).tolist()
    highs = np.maximum.reduceat(values, starts).tolist()
    for d, k, mean, low, high in zip(day[starts].tolist(), n.tolist(), means, lows, highs, strict=True):
        out[d] = MetricDay.model_construct(count=k, mean=mean, min=low, max=high)  # numbers made here
    return out


def daily_figures(
    columns: ReadingColumns, zone: ZoneInfo, first_day: date, last_day: date
) -> list[DayAggregate]:
    """Per local day of `zone`, first_day..last_day, the day's valid readings summarised and the
    left-out ones counted; days without readings are left out. `columns` cover at least those days."""
    days = LocalDays.ending(zone, last_day, (last_day - first_day).days + 1)
    t = np.asarray(columns.measured_at_us, dtype=np.float64) / 1e6
    day = days.day_of(t)
    inside = (day >= 0) & (day < days.count)
    order = np.argsort(day[inside], kind="stable")
    day = day[inside][order]
    included = np.asarray(columns.in_averages, dtype=np.bool_)[inside][order] if t.size else np.zeros(0, bool)
    counts = np.bincount(day[included], minlength=days.count)
    excluded = np.bincount(day[~included], minlength=days.count)
    names = ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "glucose_mg_dl")
    per_metric: dict[str, list[MetricDay | None]] = {}
    for name in names:
        raw: list[float | None] = getattr(columns, name)
        if len(raw) == t.size and t.size:
            values = np.asarray(raw, dtype=np.float64)[inside][order]
            per_metric[name] = _metric_days(values[included], day[included], days.count)
    out = []
    for d in np.flatnonzero(counts + excluded).tolist():
        fields: dict[str, Any] = {name: figures[d] for name, figures in per_metric.items()}
        fields.update(day=days.day(d), count=int(counts[d]), excluded_count=int(excluded[d]))
        out.append(DayAggregate.model_construct(**fields))
    return out
