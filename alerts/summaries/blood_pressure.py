"""Blood-pressure summaries: the home 7-day mean (W7) and its category, morning and evening means,
and the vectorised home means the window rules judge (alerts.summaries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alerts.profiles import RuleParameters
from alerts.summaries.exclusions import ExcludedCount, excluded_counts
from alerts.summaries.local_days import (
    BoolArray,
    FloatArray,
    IntArray,
    LocalDays,
    ReadingSeries,
    daily_sums,
    rounded,
    sample_sd,
)
from alerts.trends import rolling_sum

HOME_BP_PROTOCOL: Final = (
    "ESH 2021 home BP: 7 days ending today, first measured day discarded, mean of all valid readings "
    "of the remaining days; sufficient with >= 12 readings on >= 3 days"
)


BpCategory = Literal["below_target", "at_target", "above_target", "insufficient"]


class W7:
    """The home-BP protocol window over patients x days (clinical-rules.md §1.3): for each day t, the 7
    days ending on t, with the first day of that window that holds readings discarded ("discard day
    1": ESH 2021 [7][8], NICE NG136 [9], Hypertension Canada [10], China 2019 HBPM [14])."""

    def __init__(self, bp_n: FloatArray, days: int) -> None:
        d = bp_n.shape[1]
        self.days = days
        # first_from[p, s] = first day >= s with readings (d if none): a reverse running minimum.
        idx = np.where(bp_n > 0, np.arange(d)[None, :], d)
        first_from = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
        start = np.clip(np.arange(d) - (days - 1), 0, None)
        first = first_from[:, start]  # (P, D): first measured day of each window
        self.valid = first <= np.arange(d)[None, :]
        self.clipped = np.minimum(first, d - 1)

    def sum(self, values: FloatArray) -> FloatArray:
        """Sum of `values` over days 2-7 of each window."""
        total = rolling_sum(values, self.days)
        day1 = np.take_along_axis(values, self.clipped, axis=1)
        return np.asarray(total - np.where(self.valid, day1, 0.0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class HomeBloodPressureWindows:
    """The 7-day home mean for every patient and day (P, D), and the window it was taken over."""

    window: W7
    readings: FloatArray
    days: FloatArray
    systolic_mmhg: FloatArray
    diastolic_mmhg: FloatArray
    sufficient: BoolArray


def home_blood_pressure_windows(
    bp_n: FloatArray, bp_systolic_sum: FloatArray, bp_diastolic_sum: FloatArray, params: RuleParameters
) -> HomeBloodPressureWindows:
    """Home-BP means per the protocol (alerts.summaries) from per-day counts and sums of valid readings."""
    window = W7(bp_n, params.w7_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = window.sum(bp_n)
        days = window.sum((bp_n > 0).astype(np.float64))
        systolic = window.sum(bp_systolic_sum) / n
        diastolic = window.sum(bp_diastolic_sum) / n
    sufficient = (n >= params.w7_min_readings) & (days >= params.w7_min_days)
    return HomeBloodPressureWindows(window, n, days, systolic, diastolic, sufficient)


def at_or_above_goal(
    systolic_mmhg: FloatArray,
    diastolic_mmhg: FloatArray,
    goal_systolic: FloatArray,
    goal_diastolic: FloatArray,
) -> BoolArray:
    """Home BP not at goal: systolic or diastolic mean at or above the goal (BP-CTRL-1)."""
    with np.errstate(invalid="ignore"):
        return np.asarray((systolic_mmhg >= goal_systolic) | (diastolic_mmhg >= goal_diastolic))


def bp_category(
    systolic_mmhg: float, diastolic_mmhg: float, sufficient: bool, params: RuleParameters
) -> BpCategory:
    """The home mean against the patient's effective targets (alerts.summaries)."""
    if not sufficient:
        return "insufficient"
    goal_s, goal_d = params.goal_systolic_mmhg, params.goal_diastolic_mmhg
    if bool(
        at_or_above_goal(
            np.array(systolic_mmhg), np.array(diastolic_mmhg), np.array(goal_s), np.array(goal_d)
        )
    ):
        return "above_target"
    if systolic_mmhg < params.low_systolic_mmhg or diastolic_mmhg < params.low_diastolic_mmhg:
        return "below_target"
    return "at_target"


class BpMean(BaseModel):
    """A mean of valid readings, in mmHg."""

    model_config = ConfigDict(frozen=True)

    systolic: float
    diastolic: float
    readings: int
    days: int = Field(description="local days that contributed readings")


class HomeBpMean(BpMean):
    protocol: str = HOME_BP_PROTOCOL
    first_day: date = Field(description="first day of the 7-day window (patient's time zone)")
    last_day: date
    discarded_day: date | None = Field(description="the first measured day, left out per the protocol")
    sufficient: bool = Field(description=">= 12 readings on >= 3 days; else the category is insufficient")


class SessionMean(BpMean):
    """Morning or evening readings of the period: local hour in [start_hour, end_hour)."""

    start_hour: int
    end_hour: int


class BpTarget(BaseModel):
    """The patient's effective home-BP goal (what the rules use) and the low-BP limits."""

    model_config = ConfigDict(frozen=True)

    systolic_mmhg: float
    diastolic_mmhg: float
    low_systolic_mmhg: float
    low_diastolic_mmhg: float


class BpDay(BaseModel):
    model_config = ConfigDict(frozen=True)

    date: date
    mean_systolic: float
    mean_diastolic: float
    readings: int


class BloodPressureSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    home_mean: HomeBpMean | None = Field(description="the 7-day home mean ending on the period's last day")
    morning_mean: SessionMean | None
    evening_mean: SessionMean | None
    sd_systolic: float | None = Field(description="sample SD of the period's valid readings")
    sd_diastolic: float | None
    valid_readings: int
    days_with_readings: int
    excluded: list[ExcludedCount]
    category: BpCategory
    target: BpTarget
    daily: list[BpDay]


def _valid(bp: ReadingSeries) -> BoolArray:
    return bp.included & np.isfinite(bp.systolic) & np.isfinite(bp.diastolic) & (bp.day >= 0)


def home_window_readings(bp: ReadingSeries, days: LocalDays, params: RuleParameters) -> int:
    """Valid readings in the 7-day home window ending on the last day, counted by the mean or not."""
    first = days.count - params.w7_days
    return int(np.count_nonzero(_valid(bp) & (bp.day >= first)))


def home_mean(bp: ReadingSeries, days: LocalDays, params: RuleParameters) -> HomeBpMean | None:
    ok = _valid(bp)
    day = bp.day[ok]
    n = daily_sums(np.ones(day.size), day, days.count)[None, :]
    windows = home_blood_pressure_windows(
        n,
        daily_sums(bp.systolic[ok], day, days.count)[None, :],
        daily_sums(bp.diastolic[ok], day, days.count)[None, :],
        params,
    )
    t = days.count - 1
    readings = int(windows.readings[0, t])
    if readings == 0:
        return None
    discarded = int(windows.window.clipped[0, t]) if bool(windows.window.valid[0, t]) else None
    return HomeBpMean(
        systolic=float(windows.systolic_mmhg[0, t]),
        diastolic=float(windows.diastolic_mmhg[0, t]),
        readings=readings,
        days=int(windows.days[0, t]),
        first_day=days.day(max(t - params.w7_days + 1, 0)),
        last_day=days.day(t),
        discarded_day=None if discarded is None else days.day(discarded),
        sufficient=bool(windows.sufficient[0, t]),
    )


def _rounded_home(mean: HomeBpMean | None) -> HomeBpMean | None:
    if mean is None:
        return None
    return mean.model_copy(
        update={"systolic": round(mean.systolic, 1), "diastolic": round(mean.diastolic, 1)}
    )


def _session_mean(
    sys: FloatArray, dia: FloatArray, day: IntArray, hours: tuple[int, int]
) -> SessionMean | None:
    if sys.size == 0:
        return None
    return SessionMean(
        systolic=round(float(sys.mean()), 1),
        diastolic=round(float(dia.mean()), 1),
        readings=int(sys.size),
        days=int(np.unique(day).size),
        start_hour=hours[0],
        end_hour=hours[1],
    )


def blood_pressure_summary(
    bp: ReadingSeries, days: LocalDays, first: int, params: RuleParameters
) -> BloodPressureSummary:
    """Blood pressure over days first..last of `days` (the period), home mean ending on the last."""
    in_period = bp.since(first) & (bp.day < days.count)
    ok = in_period & bp.included & np.isfinite(bp.systolic) & np.isfinite(bp.diastolic)
    sys, dia, day, hour = bp.systolic[ok], bp.diastolic[ok], bp.day[ok], bp.hour[ok]
    home = home_mean(bp, days, params)
    morning = (hour >= params.morning_hours[0]) & (hour < params.morning_hours[1])
    evening = (hour >= params.evening_hours[0]) & (hour < params.evening_hours[1])
    daily: list[BpDay] = []
    if day.size:
        counts = np.bincount(day - first, minlength=days.count - first)
        measured = np.flatnonzero(counts)
        n = counts[measured]
        means_s = np.round(np.bincount(day - first, weights=sys)[measured] / n, 1).tolist()
        means_d = np.round(np.bincount(day - first, weights=dia)[measured] / n, 1).tolist()
        daily = [
            BpDay(date=days.day(first + i), mean_systolic=ms, mean_diastolic=md, readings=k)
            for i, ms, md, k in zip(measured.tolist(), means_s, means_d, n.tolist(), strict=True)
        ]
    excluded = [r for r, inside in zip(bp.reasons, in_period, strict=True) if inside and r is not None]
    category = (
        "insufficient"
        if home is None
        else bp_category(home.systolic, home.diastolic, home.sufficient, params)
    )
    return BloodPressureSummary(
        home_mean=_rounded_home(home),
        morning_mean=_session_mean(sys[morning], dia[morning], day[morning], params.morning_hours),
        evening_mean=_session_mean(sys[evening], dia[evening], day[evening], params.evening_hours),
        sd_systolic=rounded(sample_sd(sys)),
        sd_diastolic=rounded(sample_sd(dia)),
        valid_readings=int(sys.size),
        days_with_readings=len(daily),
        excluded=excluded_counts(excluded),
        category=category,
        target=bp_target(params),
        daily=daily,
    )


def bp_target(params: RuleParameters) -> BpTarget:
    return BpTarget(
        systolic_mmhg=params.goal_systolic_mmhg,
        diastolic_mmhg=params.goal_diastolic_mmhg,
        low_systolic_mmhg=params.low_systolic_mmhg,
        low_diastolic_mmhg=params.low_diastolic_mmhg,
    )
