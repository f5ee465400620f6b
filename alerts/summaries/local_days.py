"""Readings placed in the patient's local calendar days: the arrays every summary works on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.profiles import RuleParameters
from alerts.summaries.exclusions import ExclusionReason, exclusion_reasons
from alerts.trends import rolling_sum
from storage.readings.protocol import ReadingColumns

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
SECONDS_PER_DAY: Final = 86_400

# --- Adherence (CPT 99454 [57]) ----------------------------------------------------------------------
ADHERENCE_WINDOW_DAYS: Final = 30
REMOTE_MONITORING_MIN_DAYS: Final = 16

# A summary of `days` needs readings from this many days back (days with data in the last 30).
MIN_QUERY_DAYS: Final = ADHERENCE_WINDOW_DAYS


@dataclass(frozen=True, slots=True)
class LocalDays:
    """Local calendar days first_day..last_day of one time zone, and where readings fall in them."""

    zone: ZoneInfo
    first_day: date
    count: int
    starts_s: FloatArray  # UTC seconds of each local midnight, count + 1 of them

    @classmethod
    def ending(cls, zone: ZoneInfo, last_day: date, count: int) -> LocalDays:
        first = last_day - timedelta(days=count - 1)
        starts = [
            datetime.combine(first + timedelta(days=i), time(), tzinfo=zone).timestamp()
            for i in range(count + 1)
        ]
        return cls(zone, first, count, np.array(starts, dtype=np.float64))

    def day_of(self, t: FloatArray) -> IntArray:
        """Day index of each UTC time (-1 before the first day, `count` after the last)."""
        return np.asarray(np.searchsorted(self.starts_s, t, side="right") - 1, dtype=np.int64)

    def wall_hours(self, t: FloatArray, day: IntArray) -> FloatArray:
        """Local wall-clock hour (0-24) of each time; exact across daylight-saving changes."""
        seconds = t - self.starts_s[np.clip(day, 0, self.count - 1)]
        irregular = np.flatnonzero(np.diff(self.starts_s) != SECONDS_PER_DAY)
        if irregular.size:
            for i in np.flatnonzero(np.isin(day, irregular)):
                local = datetime.fromtimestamp(float(t[i]), self.zone)
                seconds[i] = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return np.asarray(seconds / 3600.0)

    def day(self, index: int) -> date:
        return self.first_day + timedelta(days=index)


def query_window(params: RuleParameters, now: datetime, days: int) -> tuple[datetime, datetime]:
    """The UTC [start, end) a summary of `days` ending at `now` needs from the store."""
    zone = ZoneInfo(params.timezone)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=max(days, MIN_QUERY_DAYS) - 1)
    start = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
    return start, now.astimezone(UTC) + timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    """Columns of one kind as arrays, with each reading's local day and hour."""

    t: FloatArray
    day: IntArray
    hour: FloatArray
    included: BoolArray
    systolic: FloatArray
    diastolic: FloatArray
    glucose: FloatArray
    meal: list[str | None]
    reasons: list[ExclusionReason | None]

    @classmethod
    def of(cls, columns: ReadingColumns, days: LocalDays, end_s: float) -> ReadingSeries:
        t = np.asarray(columns.measured_at_us, dtype=np.float64) / 1e6
        keep = t < end_s
        day = days.day_of(t)
        n = t.size

        def floats(values: Sequence[float | None]) -> FloatArray:
            return np.asarray(values, dtype=np.float64) if len(values) == n else np.full(n, np.nan)

        reasons: list[ExclusionReason | None] = [
            None if reading is None else (exclusion_reasons(reading) or ["device_error"])[0]
            for reading in columns.left_out
        ]
        meal = list(columns.meal) if len(columns.meal) == n else [None] * n
        index = np.flatnonzero(keep)
        return cls(
            t[index],
            day[index],
            days.wall_hours(t[index], day[index]),
            np.asarray(columns.in_averages, dtype=np.bool_)[index] if n else np.zeros(0, dtype=np.bool_),
            floats(columns.systolic_mmhg)[index],
            floats(columns.diastolic_mmhg)[index],
            floats(columns.glucose_mg_dl)[index],
            [meal[i] for i in index],
            [reasons[i] for i in index],
        )

    def since(self, first: int) -> BoolArray:
        return np.asarray(self.day >= first)


def rounded(value: float | np.floating | None, digits: int = 1) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def sample_sd(values: FloatArray) -> float | None:
    return float(np.std(values, ddof=1)) if values.size >= 2 else None


def daily_sums(values: FloatArray, day: IntArray, count: int) -> FloatArray:
    return np.bincount(day, weights=values, minlength=count)[:count].astype(np.float64)


def days_with_data(any_n: FloatArray, window: int = ADHERENCE_WINDOW_DAYS) -> FloatArray:
    """Days with at least one reading in the `window` days ending on each day (§4 [57], DQ-03)."""
    return rolling_sum((any_n > 0).astype(np.float64), window)


def days_with_data_30(series: Sequence[ReadingSeries], days: LocalDays) -> int:
    first = days.count - ADHERENCE_WINDOW_DAYS
    seen: set[int] = set()
    for s in series:
        seen.update(int(d) for d in np.unique(s.day[(s.day >= first) & (s.day < days.count)]))
    return len(seen)
