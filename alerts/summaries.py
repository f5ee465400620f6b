"""Clinical summaries of a patient's stored readings: the one module that computes them (numpy).

The alert rules (alerts/window_rules/), the doctors' panel, the patient page and reports all take their
numbers from here, so a 7-day home mean, a time in range or a GMI is the same number wherever it is
shown or acted on. Invalid readings (cuff errors, control solution, meter faults) and readings the
cuff flagged unreliable (body movement, loose cuff, improper position) never enter a figure; they
are counted as excluded, each under one reason code (`ExclusionReason`).

What is implemented, with its source (clinical-rules.md):

- Home blood pressure, 7-day mean (§1.3, "W7" in §7): the 7 local calendar days ending on the day
  asked for, today included; the first of those days that holds readings is discarded ("discard
  day 1": ESH 2021 HBPM position paper and measurement guideline [7][8], NICE NG136 [9], Hypertension
  Canada [10], China 2019 HBPM [14]); every valid reading of the remaining days is averaged. The
  protocol asks for duplicate morning and evening readings; readings at other times of day are
  averaged too (as the rules do), and the morning and evening means are given beside it. The mean is
  "sufficient" with at least 12 valid readings (§7: "≥12 valid readings, else insufficient") on at
  least 3 days (China 2019 HBPM: "≥3 days" when 7 are impossible [14]).
- BP category against the patient's effective targets (what the rules use): `above_target` when the
  mean systolic or diastolic is at or above the goal (the BP-CTRL-1 condition, [1][6][9][11][12]);
  `below_target` when it is below 90 systolic or 60 diastolic (the hypotension cut-off of BP-LOW-1,
  §1.5 [28]); `at_target` between; `insufficient` when the mean is not sufficient.
- Glucose ranges (§2.4, Battelino 2019 [32][33]): very low < 54, low 54-69, in range 70-180, high
  181-250, very high > 250 mg/dL, with the in-range band taken from the patient's effective targets
  (level-1 hypo threshold to the post-meal limit; 70-180 unless the doctor set others). The consensus
  states its ranges in whole mg/dL and their mmol/L equivalents (3.9-10.0 mmol/L in range); a value
  is binned after rounding to whole mg/dL (half up), so a meter reading 10.0 mmol/L (180.16 mg/dL)
  is in range and 3.0 mmol/L (54.05) is low, in either unit. Percentages are of valid readings.
  `time_in_range_70_180_percent` is the consensus range itself, whatever the patient's band.
- Hypoglycaemia events by ADA level (§2.1 [30]): a run of consecutive valid readings below 70 mg/dL
  is one event, level 2 when any of its readings is below 54; it counts when the readings do not show
  it ending within 15 minutes (ATTD 2017: episodes last ≥ 15 min [34]), so a one-sample CGM dip does
  not count and a meter reading followed by the next one hours later does.
- GMI (§2.5, Bergenstal 2018 [35]): 3.31 + 0.02392 × mean glucose (mg/dL), in %.
- CV (§2.4 [32][34]): sample SD / mean × 100 (SD with n - 1), given from `MIN_READINGS_FOR_CV` valid
  readings (DEFAULT: no source fixes a minimum).
- Data sufficiency for GMI and the AGP (§2.4, §4 [32][33]): 14 days of data with ≥ 70 % wear. Wear
  is the share of the period's 15-minute slots that hold a valid reading (the CGM-SUFF rule's
  measure), so it is met by continuous monitoring and never by a few meter readings a day; the reason
  is given when it is not met.
- AGP (§2.7 [37]): 5th/25th/50th/75th/95th percentiles of valid readings by hour of day in the
  patient's time zone (numpy's linear interpolation, Hyndman-Fan type 7).
- Days with data in the last 30 (§4, CPT 99454: 16 days is the remote-monitoring threshold [57]):
  local days with any reading, valid or not (a transmitted error reading is still a day the patient
  measured), as the DQ-03 rule counts them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from alerts.profiles import RuleParameters
from alerts.trends import rolling_sum
from storage.readings.protocol import AnyReading, ReadingColumns
from vitals import plausibility
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    GlucoseReading,
    Meal,
    SampleLocation,
    SampleType,
    SensorStatus,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_DAY: Final = 86_400

# --- Battelino 2019 cut points (mg/dL, whole numbers) [32][33] ---------------------------------------
VERY_LOW_BELOW_MG_DL: Final = 54.0  # time below range, level 2: < 54
LOW_BELOW_MG_DL: Final = 70.0  # time below range, level 1: 54-69
HIGH_ABOVE_MG_DL: Final = 180.0  # time above range, level 1: 181-250
VERY_HIGH_ABOVE_MG_DL: Final = 250.0  # time above range, level 2: > 250
# ADA hypoglycaemia levels (§2.1 [30]): level 1 < 70 and >= 54, level 2 < 54.
HYPO_LEVEL_1_BELOW_MG_DL: Final = 70.0
HYPO_LEVEL_2_BELOW_MG_DL: Final = 54.0
HYPO_EVENT_MIN_S: Final = 15 * 60  # episodes last >= 15 min (ATTD 2017 [34])

# --- GMI (Bergenstal 2018 [35]) ---------------------------------------------------------------------
GMI_INTERCEPT_PERCENT: Final = 3.31
GMI_SLOPE_PERCENT_PER_MG_DL: Final = 0.02392

MIN_READINGS_FOR_CV: Final = 10  # DEFAULT

# --- Data sufficiency (Battelino 2019 [32][33]) ------------------------------------------------------
SUFFICIENT_DAYS: Final = 14
SUFFICIENT_WEAR: Final = 0.70
WEAR_SLOT_S: Final = 15 * 60
AGP_PERCENTILES: Final = (5.0, 25.0, 50.0, 75.0, 95.0)

# --- Adherence (CPT 99454 [57]) ----------------------------------------------------------------------
ADHERENCE_WINDOW_DAYS: Final = 30
REMOTE_MONITORING_MIN_DAYS: Final = 16

# --- Windows of the panel ------------------------------------------------------------------------------
PANEL_GLUCOSE_DAYS: Final = 14  # the panel's time in range and reading count
# A summary of `days` needs readings from this many days back (days with data in the last 30).
MIN_QUERY_DAYS: Final = ADHERENCE_WINDOW_DAYS

HOME_BP_PROTOCOL: Final = (
    "ESH 2021 home BP: 7 days ending today, first measured day discarded, mean of all valid readings "
    "of the remaining days; sufficient with >= 12 readings on >= 3 days"
)

ExclusionReason = Literal[
    "not_measured",
    "implausible_value",
    "body_movement",
    "cuff_too_loose",
    "improper_position",
    "control_solution",
    "result_too_high",
    "result_too_low",
    "sensor_fault",
    "device_error",
]
"""Why a reading is left out of summaries, one code per cause (the front end words them):

- not_measured: the meter sent no value (a cuff's "Err", a NaN or reserved value);
- implausible_value: outside the plausibility limits of vitals.plausibility, or diastolic not below
  systolic (a decoding fault or meter error);
- body_movement, cuff_too_loose, improper_position: the cuff's Measurement Status flags (DQ-02);
- control_solution: a meter test with control solution, not the patient's blood;
- result_too_high, result_too_low: the meter's "HI" / "LO" (beyond its measuring range: the true
  value is unknown, and clinically extreme);
- sensor_fault: another meter annunciation that invalidates the value (strip, sample size,
  temperature, sensor fault, interrupted read);
- device_error: the gateway or meter marked the reading invalid for a reason not listed above.
"""
EXCLUSION_REASONS: Final[tuple[ExclusionReason, ...]] = get_args(ExclusionReason)

BpCategory = Literal["below_target", "at_target", "above_target", "insufficient"]
MealContext = Literal["fasting", "preprandial", "postprandial", "bedtime", "casual", "unknown"]
InsufficientReason = Literal["no_readings", "period_shorter_than_14_days", "wear_below_70_percent"]
"""Why GMI and the AGP are not given: no valid readings; a period under 14 days; or valid readings
in fewer than 70 % of the period's 15-minute slots (Battelino 2019 [32][33])."""

_BP_STATUS_REASON: Final[dict[BloodPressureStatus, ExclusionReason]] = {
    BloodPressureStatus.BODY_MOVEMENT: "body_movement",
    BloodPressureStatus.CUFF_TOO_LOOSE: "cuff_too_loose",
    BloodPressureStatus.IMPROPER_POSITION: "improper_position",
}
_SENSOR_REASON: Final[dict[SensorStatus, ExclusionReason]] = {
    SensorStatus.RESULT_TOO_HIGH: "result_too_high",
    SensorStatus.RESULT_TOO_LOW: "result_too_low",
}
_MEALS: Final[tuple[MealContext, ...]] = get_args(MealContext)


# =====================================================================================================
# Exclusion reasons


def exclusion_reasons(reading: AnyReading) -> list[ExclusionReason]:
    """Every reason `reading` is left out of summaries, most telling first; empty when it enters them."""
    if isinstance(reading, BloodPressureReading):
        return _bp_reasons(reading)
    return _glucose_reasons(reading)


def _bp_reasons(reading: BloodPressureReading) -> list[ExclusionReason]:
    reasons: list[ExclusionReason] = []
    if not reading.valid:
        systolic, diastolic = reading.systolic_mmhg, reading.diastolic_mmhg
        if systolic is None or diastolic is None:
            reasons.append("not_measured")
        limits = (
            (plausibility.SYSTOLIC_MMHG, systolic),
            (plausibility.DIASTOLIC_MMHG, diastolic),
            (plausibility.MEAN_ARTERIAL_MMHG, reading.mean_arterial_mmhg),
            (plausibility.PULSE_BPM, reading.pulse_bpm),
        )
        if any(value is not None and not limit.contains(value) for limit, value in limits) or (
            systolic is not None and diastolic is not None and diastolic >= systolic
        ):
            reasons.append("implausible_value")
    reasons.extend(
        reason for status, reason in _BP_STATUS_REASON.items() if status in reading.measurement_status
    )
    if not reading.valid and not reasons:
        reasons.append("device_error")
    return reasons


def _glucose_reasons(reading: GlucoseReading) -> list[ExclusionReason]:
    if reading.valid:
        return []
    reasons: list[ExclusionReason] = []
    if (
        reading.sample_type is SampleType.CONTROL_SOLUTION
        or reading.sample_location is SampleLocation.CONTROL_SOLUTION
    ):
        reasons.append("control_solution")
    status = reading.sensor_status
    reasons.extend(reason for flag, reason in _SENSOR_REASON.items() if flag in status)
    if any(flag not in _SENSOR_REASON and flag in _INVALIDATING for flag in status):
        reasons.append("sensor_fault")
    value = reading.glucose_mg_dl
    if value is None:
        reasons.append("not_measured")
    elif not plausibility.GLUCOSE_MG_DL.contains(value):
        reasons.append("implausible_value")
    if not reasons:
        reasons.append("device_error")
    return reasons


_INVALIDATING: Final = frozenset(SensorStatus) - {SensorStatus.DEVICE_BATTERY_LOW, SensorStatus.TIME_FAULT}


def _excluded_counts(reasons: Iterable[ExclusionReason]) -> list[ExcludedCount]:
    counts = Counter(reasons)
    return [ExcludedCount(reason=r, count=counts[r]) for r in EXCLUSION_REASONS if counts[r]]


# =====================================================================================================
# Vectorised building blocks (patients x days): the rules in alerts/window_rules/ call these.


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
    """Home-BP means per the protocol (module doc) from per-day counts and sums of valid readings."""
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
    """The home mean against the patient's effective targets (module doc)."""
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


def whole_mg_dl(glucose_mg_dl: FloatArray) -> FloatArray:
    """Glucose rounded half up to whole mg/dL, the resolution the consensus ranges are stated in."""
    return np.floor(np.asarray(glucose_mg_dl, dtype=np.float64) + 0.5)


def range_percentages(
    n: FloatArray, below_54: FloatArray, below_70: FloatArray, above_180: FloatArray, above_250: FloatArray
) -> dict[str, FloatArray]:
    """Percent of readings per consensus range from counts below/above the cut points (§2.4 [33])."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = {
            "below_54": 100.0 * below_54 / n,
            "below_70": 100.0 * below_70 / n,
            "above_180": 100.0 * above_180 / n,
            "above_250": 100.0 * above_250 / n,
        }
    pct["in_range_70_180"] = 100.0 - pct["below_70"] - pct["above_180"]
    return pct


def gmi_percent(mean_glucose_mg_dl: FloatArray | float) -> FloatArray:
    """GMI (%) = 3.31 + 0.02392 × mean glucose in mg/dL (Bergenstal 2018 [35])."""
    return np.asarray(GMI_INTERCEPT_PERCENT + GMI_SLOPE_PERCENT_PER_MG_DL * np.asarray(mean_glucose_mg_dl))


def coefficient_of_variation_percent(
    n: FloatArray, total: FloatArray, sum_of_squares: FloatArray
) -> FloatArray:
    """%CV = sample SD / mean × 100 from count, sum and sum of squares ([32][34])."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        sd = np.sqrt(np.clip((sum_of_squares - n * mean * mean) / (n - 1.0), 0.0, None))
        return np.asarray(100.0 * sd / mean)


def days_with_data(any_n: FloatArray, window: int = ADHERENCE_WINDOW_DAYS) -> FloatArray:
    """Days with at least one reading in the `window` days ending on each day (§4 [57], DQ-03)."""
    return rolling_sum((any_n > 0).astype(np.float64), window)


# =====================================================================================================
# One patient's summary (the panel, the patient page, reports)


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


class ExcludedCount(BaseModel):
    """Readings left out, counted once each under their first (most telling) reason."""

    model_config = ConfigDict(frozen=True)

    reason: ExclusionReason
    count: int


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


class GlucoseRanges(BaseModel):
    """Percent of valid readings per range (Battelino 2019; in-range band from the targets)."""

    model_config = ConfigDict(frozen=True)

    very_low: float
    low: float
    in_range: float
    high: float
    very_high: float


class GlucoseTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    low_mg_dl: float
    high_mg_dl: float


class HypoEvents(BaseModel):
    model_config = ConfigDict(frozen=True)

    level_1: int = Field(description="events below 70 mg/dL that stayed at or above 54 (ADA level 1)")
    level_2: int = Field(description="events below 54 mg/dL (ADA level 2)")


class MealMean(BaseModel):
    model_config = ConfigDict(frozen=True)

    meal: MealContext
    readings: int
    mean_mg_dl: float


class AgpHour(BaseModel):
    """Percentiles of the valid readings taken in one hour of the day (patient's time zone)."""

    model_config = ConfigDict(frozen=True)

    hour: int = Field(ge=0, le=23)
    readings: int
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


class GlucoseSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    readings: int = Field(description="valid readings in the period")
    mean_mg_dl: float | None
    sd_mg_dl: float | None
    gmi_percent: float | None
    gmi_reason: InsufficientReason | None = Field(description="why GMI is not given")
    cv_percent: float | None
    ranges: GlucoseRanges | None
    time_in_range_70_180_percent: float | None = Field(description="the consensus range 70-180 mg/dL")
    target: GlucoseTarget
    hypo_events: HypoEvents
    by_meal: list[MealMean]
    wear_percent: float = Field(description="share of the period's 15-minute slots holding a valid reading")
    agp: list[AgpHour] | None
    agp_sufficient: bool
    agp_reason: InsufficientReason | None
    excluded: list[ExcludedCount]


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


# --- time --------------------------------------------------------------------------------------------


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
class _Series:
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
    def of(cls, columns: ReadingColumns, days: LocalDays, end_s: float) -> _Series:
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


def _round(value: float | np.floating | None, digits: int = 1) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _sample_sd(values: FloatArray) -> float | None:
    return float(np.std(values, ddof=1)) if values.size >= 2 else None


def _daily(values: FloatArray, day: IntArray, count: int) -> FloatArray:
    return np.bincount(day, weights=values, minlength=count)[:count].astype(np.float64)


# --- blood pressure -------------------------------------------------------------------------------------


def _home_mean(bp: _Series, days: LocalDays, params: RuleParameters) -> HomeBpMean | None:
    ok = bp.included & np.isfinite(bp.systolic) & np.isfinite(bp.diastolic) & (bp.day >= 0)
    day = bp.day[ok]
    n = _daily(np.ones(day.size), day, days.count)[None, :]
    windows = home_blood_pressure_windows(
        n,
        _daily(bp.systolic[ok], day, days.count)[None, :],
        _daily(bp.diastolic[ok], day, days.count)[None, :],
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
    bp: _Series, days: LocalDays, first: int, params: RuleParameters
) -> BloodPressureSummary:
    """Blood pressure over days first..last of `days` (the period), home mean ending on the last."""
    in_period = bp.since(first) & (bp.day < days.count)
    ok = in_period & bp.included & np.isfinite(bp.systolic) & np.isfinite(bp.diastolic)
    sys, dia, day, hour = bp.systolic[ok], bp.diastolic[ok], bp.day[ok], bp.hour[ok]
    home = _home_mean(bp, days, params)
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
        sd_systolic=_round(_sample_sd(sys)),
        sd_diastolic=_round(_sample_sd(dia)),
        valid_readings=int(sys.size),
        days_with_readings=len(daily),
        excluded=_excluded_counts(excluded),
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


# --- glucose -------------------------------------------------------------------------------------------


def glucose_target(params: RuleParameters) -> GlucoseTarget:
    """The in-range band: the level-1 hypo threshold to the post-meal limit (effective targets)."""
    return GlucoseTarget(low_mg_dl=params.hypo1_mg_dl, high_mg_dl=params.postprandial_limit_mg_dl)


def glucose_ranges(glucose_mg_dl: FloatArray, target: GlucoseTarget) -> GlucoseRanges | None:
    """Percent of readings per range (module doc). The band's edges are rounded like the readings
    and kept inside the level-2 cut points, so very low and very high always mean < 54 and > 250."""
    if glucose_mg_dl.size == 0:
        return None
    g = whole_mg_dl(glucose_mg_dl)
    low_edge = max(float(whole_mg_dl(np.array(target.low_mg_dl))), VERY_LOW_BELOW_MG_DL)
    high_edge = min(float(whole_mg_dl(np.array(target.high_mg_dl))), VERY_HIGH_ABOVE_MG_DL)
    very_low = g < VERY_LOW_BELOW_MG_DL
    very_high = g > VERY_HIGH_ABOVE_MG_DL
    low = ~very_low & (g < low_edge)
    high = ~very_high & (g > high_edge)
    n = float(g.size)

    def pct(mask: BoolArray) -> float:
        return round(100.0 * float(np.count_nonzero(mask)) / n, 1)

    in_range = ~(very_low | low | high | very_high)
    return GlucoseRanges(
        very_low=pct(very_low), low=pct(low), in_range=pct(in_range), high=pct(high), very_high=pct(very_high)
    )


def time_in_range_70_180(glucose_mg_dl: FloatArray) -> float | None:
    if glucose_mg_dl.size == 0:
        return None
    g = whole_mg_dl(glucose_mg_dl)
    inside = (g >= LOW_BELOW_MG_DL) & (g <= HIGH_ABOVE_MG_DL)
    return round(100.0 * float(np.count_nonzero(inside)) / g.size, 1)


def hypo_events(t: FloatArray, glucose_mg_dl: FloatArray) -> HypoEvents:
    """ADA level 1 and level 2 events among time-ordered valid readings (module doc)."""
    g = whole_mg_dl(glucose_mg_dl)
    below = g < HYPO_LEVEL_1_BELOW_MG_DL
    level_1 = level_2 = 0
    edges = np.flatnonzero(np.diff(np.r_[False, below, False].astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        ended_by = float(t[stop]) if stop < t.size else math.inf
        if ended_by - float(t[start]) < HYPO_EVENT_MIN_S:
            continue
        if bool(np.any(g[start:stop] < HYPO_LEVEL_2_BELOW_MG_DL)):
            level_2 += 1
        else:
            level_1 += 1
    return HypoEvents(level_1=level_1, level_2=level_2)


@dataclass(frozen=True, slots=True)
class Sufficiency:
    wear_percent: float
    reason: InsufficientReason | None


def cgm_sufficiency(t: FloatArray, period_start_s: float, period_end_s: float, days: int) -> Sufficiency:
    """14 days with >= 70 % of the 15-minute slots holding a valid reading (module doc)."""
    slots = max(math.ceil((period_end_s - period_start_s) / WEAR_SLOT_S), 1)
    filled = np.unique(np.floor((t - period_start_s) / WEAR_SLOT_S)).size if t.size else 0
    wear = min(filled / slots, 1.0)
    reason: InsufficientReason | None = None
    if t.size == 0:
        reason = "no_readings"
    elif days < SUFFICIENT_DAYS:
        reason = "period_shorter_than_14_days"
    elif wear < SUFFICIENT_WEAR:
        reason = "wear_below_70_percent"
    return Sufficiency(round(100.0 * wear, 1), reason)


def agp_profile(glucose_mg_dl: FloatArray, hour: FloatArray) -> list[AgpHour]:
    """5/25/50/75/95th percentiles by hour of day (§2.7 [37]); hours without readings left out."""
    out: list[AgpHour] = []
    whole_hours = np.floor(hour).astype(np.int64)
    for h in range(24):
        values = glucose_mg_dl[whole_hours == h]
        if values.size == 0:
            continue
        p5, p25, p50, p75, p95 = (round(float(v), 1) for v in np.percentile(values, AGP_PERCENTILES))
        out.append(AgpHour(hour=h, readings=int(values.size), p5=p5, p25=p25, p50=p50, p75=p75, p95=p95))
    return out


def glucose_summary(
    glucose: _Series, days: LocalDays, first: int, params: RuleParameters, period_start_s: float, end_s: float
) -> GlucoseSummary:
    in_period = glucose.since(first) & (glucose.day < days.count)
    ok = in_period & glucose.included & np.isfinite(glucose.glucose)
    values, t, hour = glucose.glucose[ok], glucose.t[ok], glucose.hour[ok]
    target = glucose_target(params)
    n = int(values.size)
    mean = float(values.mean()) if n else None
    sd = _sample_sd(values)
    sufficiency = cgm_sufficiency(t, period_start_s, end_s, days.count - first)
    meals = [m for m, inside in zip(glucose.meal, ok, strict=True) if inside]
    by_meal: list[MealMean] = []
    meal_codes = np.array([_MEALS.index(_meal_context(m)) for m in meals], dtype=np.int64)
    for code, name in enumerate(_MEALS):
        chosen = values[meal_codes == code] if n else values
        if chosen.size:
            by_meal.append(
                MealMean(meal=name, readings=int(chosen.size), mean_mg_dl=round(float(chosen.mean()), 1))
            )
    cv = None
    if n >= MIN_READINGS_FOR_CV and sd is not None and mean:
        cv = round(100.0 * sd / mean, 1)
    excluded = [r for r, inside in zip(glucose.reasons, in_period, strict=True) if inside and r is not None]
    return GlucoseSummary(
        readings=n,
        mean_mg_dl=_round(mean),
        sd_mg_dl=_round(sd),
        gmi_percent=_round(float(gmi_percent(mean)), 2)
        if mean is not None and sufficiency.reason is None
        else None,
        gmi_reason=sufficiency.reason,
        cv_percent=cv,
        ranges=glucose_ranges(values, target),
        time_in_range_70_180_percent=time_in_range_70_180(values),
        target=target,
        hypo_events=hypo_events(t, values),
        by_meal=by_meal,
        wear_percent=sufficiency.wear_percent,
        agp=agp_profile(values, hour) if sufficiency.reason is None else None,
        agp_sufficient=sufficiency.reason is None,
        agp_reason=sufficiency.reason,
        excluded=_excluded_counts(excluded),
    )


_MEAL_CONTEXT: Final[dict[str | None, MealContext]] = {
    Meal.FASTING.value: "fasting",
    Meal.PREPRANDIAL.value: "preprandial",
    Meal.POSTPRANDIAL.value: "postprandial",
    Meal.BEDTIME.value: "bedtime",
    Meal.CASUAL.value: "casual",
}


def _meal_context(meal: str | None) -> MealContext:
    """The Glucose Measurement Context's meal (ble-health-profiles.md §2.3); none sent: unknown."""
    return _MEAL_CONTEXT.get(meal, "unknown")


def _days_with_data_30(series: Sequence[_Series], days: LocalDays) -> int:
    first = days.count - ADHERENCE_WINDOW_DAYS
    seen: set[int] = set()
    for s in series:
        seen.update(int(d) for d in np.unique(s.day[(s.day >= first) & (s.day < days.count)]))
    return len(seen)


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
    bp = _Series.of(blood_pressure, local, end_s)
    glu = _Series.of(glucose, local, end_s)
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
        days_with_data_30=_days_with_data_30((bp, glu), local),
    )


# --- daily figures (the trend chart) ---------------------------------------------------------------------


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


# --- the panel's figures ----------------------------------------------------------------------------------


class PanelBloodPressure(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean_systolic_mmhg: float
    mean_diastolic_mmhg: float
    readings: int
    days: int
    category: BpCategory
    target_systolic_mmhg: float
    target_diastolic_mmhg: float


class PanelGlucose(BaseModel):
    model_config = ConfigDict(frozen=True)

    latest_mg_dl: float
    latest_at: datetime
    time_in_range_percent: float | None = Field(description="in-range percent of the last 14 days' readings")
    readings_14d: int


class PanelFigures(BaseModel):
    """What the panel shows of one patient besides alerts and gateway, as of `computed_at`."""

    model_config = ConfigDict(frozen=True)

    computed_at: datetime
    valid_until: datetime = Field(description="the next local midnight: the windows move then")
    last_reading_at: datetime | None
    blood_pressure: PanelBloodPressure | None
    glucose: PanelGlucose | None
    days_with_data_30: int


def panel_figures(
    blood_pressure: ReadingColumns,
    glucose: ReadingColumns,
    params: RuleParameters,
    *,
    now: datetime,
    latest_valid_glucose: tuple[float, datetime] | None,
    last_reading_at: datetime | None,
) -> PanelFigures:
    """The panel row's figures from the columns of the last 30 days (`query_window(params, now, 30)`),
    with the newest valid glucose (mg/dL, when) and the newest reading's time, which may be older."""
    zone = ZoneInfo(params.timezone)
    today = now.astimezone(zone).date()
    local = LocalDays.ending(zone, today, ADHERENCE_WINDOW_DAYS)
    end_s = now.timestamp()
    bp = _Series.of(blood_pressure, local, end_s)
    glu = _Series.of(glucose, local, end_s)
    home = _home_mean(bp, local, params)
    panel_bp = None
    if home is not None:
        panel_bp = PanelBloodPressure(
            mean_systolic_mmhg=round(home.systolic, 1),
            mean_diastolic_mmhg=round(home.diastolic, 1),
            readings=home.readings,
            days=home.days,
            category=bp_category(home.systolic, home.diastolic, home.sufficient, params),
            target_systolic_mmhg=params.goal_systolic_mmhg,
            target_diastolic_mmhg=params.goal_diastolic_mmhg,
        )
    first = local.count - PANEL_GLUCOSE_DAYS
    recent = glu.since(first) & glu.included & np.isfinite(glu.glucose)
    ranges = glucose_ranges(glu.glucose[recent], glucose_target(params))
    panel_glucose = None
    if latest_valid_glucose is not None:
        value, measured_at = latest_valid_glucose
        panel_glucose = PanelGlucose(
            latest_mg_dl=round(value, 1),
            latest_at=measured_at,
            time_in_range_percent=None if ranges is None else ranges.in_range,
            readings_14d=int(np.count_nonzero(recent)),
        )
    return PanelFigures(
        computed_at=now.astimezone(UTC),
        valid_until=datetime.fromtimestamp(float(local.starts_s[-1]), UTC),
        last_reading_at=last_reading_at,
        blood_pressure=panel_bp,
        glucose=panel_glucose,
        days_with_data_30=_days_with_data_30((bp, glu), local),
    )
