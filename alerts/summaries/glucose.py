"""Glucose summaries: ranges, GMI, CV, hypoglycaemia events, sufficiency and the AGP, and the
vectorised figures the window rules judge (alerts.summaries)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alerts.profiles import RuleParameters
from alerts.summaries.exclusions import ExcludedCount, excluded_counts
from alerts.summaries.local_days import BoolArray, FloatArray, LocalDays, ReadingSeries, rounded, sample_sd
from vitals.readings import Meal

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

MealContext = Literal["fasting", "preprandial", "postprandial", "bedtime", "casual", "unknown"]
InsufficientReason = Literal["no_readings", "period_shorter_than_14_days", "wear_below_70_percent"]
"""Why GMI and the AGP are not given: no valid readings; a period under 14 days; or valid readings
in fewer than 70 % of the period's 15-minute slots (Battelino 2019 [32][33])."""
_MEALS: Final[tuple[MealContext, ...]] = get_args(MealContext)


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


def glucose_target(params: RuleParameters) -> GlucoseTarget:
    """The in-range band: the level-1 hypo threshold to the post-meal limit (effective targets)."""
    return GlucoseTarget(low_mg_dl=params.hypo1_mg_dl, high_mg_dl=params.postprandial_limit_mg_dl)


def glucose_ranges(glucose_mg_dl: FloatArray, target: GlucoseTarget) -> GlucoseRanges | None:
    """Percent of readings per range (alerts.summaries). The band's edges are rounded like the readings
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
    """ADA level 1 and level 2 events among time-ordered valid readings (alerts.summaries)."""
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
    """14 days with >= 70 % of the 15-minute slots holding a valid reading (alerts.summaries)."""
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
    glucose: ReadingSeries,
    days: LocalDays,
    first: int,
    params: RuleParameters,
    period_start_s: float,
    end_s: float,
) -> GlucoseSummary:
    in_period = glucose.since(first) & (glucose.day < days.count)
    ok = in_period & glucose.included & np.isfinite(glucose.glucose)
    values, t, hour = glucose.glucose[ok], glucose.t[ok], glucose.hour[ok]
    target = glucose_target(params)
    n = int(values.size)
    mean = float(values.mean()) if n else None
    sd = sample_sd(values)
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
        mean_mg_dl=rounded(mean),
        sd_mg_dl=rounded(sd),
        gmi_percent=rounded(float(gmi_percent(mean)), 2)
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
        excluded=excluded_counts(excluded),
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
