"""Rules over windows and trends, vectorised over patients x days (numpy).

Each rule is one function below, registered by its rule id in `WINDOW_RULES`. A rule yields, for
every patient and every day, a status "as of the end of that day" (or as of `now` on the last day):
FIRING, CLEAR or UNKNOWN (insufficient data). The same code serves the periodic sweep over every
patient and the per-reading evaluation of one patient (a 1 x days matrix, alerts/daily_matrix.py),
so the two paths cannot disagree.

The numbers the rules judge (home-BP 7-day means, BP against goal, glucose ranges, GMI, CV, days with
data) come from alerts.summaries, the one place of clinical summaries, so that an alert and the
panel or patient page that shows it state the same figure. Home-BP averages follow clinical-rules.md
§1.3 / §7 "W7" (see alerts.summaries); readings with device status flags or NaN are excluded (DQ-02,
[27][61]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from alerts.daily_matrix import SECONDS_PER_DAY, BoolArray, DailyMatrix, FloatArray
from alerts.profiles import THRESHOLD_EPSILON, RuleParameters
from alerts.summaries import (
    HomeBloodPressureWindows,
    at_or_above_goal,
    coefficient_of_variation_percent,
    days_with_data,
    gmi_percent,
    home_blood_pressure_windows,
    range_percentages,
)
from alerts.trends import rolling_baseline, rolling_slope, rolling_sum, shift_days, upward_shift
from vitals.payload import AlertSeverity

StatusCodes = npt.NDArray[np.int8]

UNKNOWN, CLEAR, FIRING = np.int8(0), np.int8(1), np.int8(2)
INFO, WARNING = 0, 1
SEVERITY_OF_RANK = {0: AlertSeverity.INFO, 1: AlertSeverity.WARNING, 2: AlertSeverity.URGENT}
# Glycemia Risk Index weights of very low, low, very high and high time (Klonoff 2023 [36]).
GRI_VERY_LOW_WEIGHT, GRI_LOW_WEIGHT, GRI_VERY_HIGH_WEIGHT, GRI_HIGH_WEIGHT = 3.0, 2.4, 1.6, 0.8
GRI_ZONE_D = 60.0  # zones D/E are GRI > 60 ([36])
CGM_CV_LIMIT_PERCENT = 36.0  # %CV > 36 is unstable glucose ([32][34])


@dataclass(slots=True)
class WindowResult:
    """One rule over (P, D): status codes, severity ranks and the values that explain it."""

    rule_id: str
    status: StatusCodes
    severity: StatusCodes
    values: dict[str, FloatArray]
    window_days: int


@dataclass(frozen=True, slots=True)
class PatientArrays:
    """Per-patient targets as arrays (P,), so the doctor's overrides apply inside the vectorised sweep."""

    goal_systolic_mmhg: FloatArray
    goal_diastolic_mmhg: FloatArray
    fasting_limit_mg_dl: FloatArray
    fasting_limit_inclusive: BoolArray
    postprandial_limit_mg_dl: FloatArray
    older_or_high_risk: BoolArray
    titration: BoolArray

    @classmethod
    def from_parameters(cls, params: Sequence[RuleParameters]) -> PatientArrays:
        return cls(
            np.array([one.goal_systolic_mmhg for one in params], dtype=np.float64),
            np.array([one.goal_diastolic_mmhg for one in params], dtype=np.float64),
            np.array([one.fasting_limit_mg_dl for one in params], dtype=np.float64),
            np.array([one.fasting_limit_inclusive for one in params], dtype=np.bool_),
            np.array([one.postprandial_limit_mg_dl for one in params], dtype=np.float64),
            np.array([one.older_or_high_risk for one in params], dtype=np.bool_),
            np.array([one.titration for one in params], dtype=np.bool_),
        )

    @classmethod
    def uniform(cls, params: RuleParameters, patients: int) -> PatientArrays:
        return cls.from_parameters([params]).repeat(patients)

    def repeat(self, patients: int) -> PatientArrays:
        return PatientArrays(*(np.repeat(getattr(self, name), patients) for name in _PATIENT_ARRAY_FIELDS))


_PATIENT_ARRAY_FIELDS = (
    "goal_systolic_mmhg",
    "goal_diastolic_mmhg",
    "fasting_limit_mg_dl",
    "fasting_limit_inclusive",
    "postprandial_limit_mg_dl",
    "older_or_high_risk",
    "titration",
)


def _status(fires: BoolArray, known: BoolArray) -> StatusCodes:
    codes = np.where(known, np.where(fires, FIRING, CLEAR), UNKNOWN)
    return codes.astype(np.int8)


@dataclass(frozen=True, slots=True)
class CgmWindows:
    """The CGM figures of the 14-day windows (CGM-* rules, Battelino 2019 [32][33])."""

    readings: FloatArray
    wear_fraction: FloatArray
    cgm_user: BoolArray  # CGM data in the last 28 days
    sufficient: BoolArray  # CGM user with >= 70 % of the 15-minute slots covered
    below_54_percent: FloatArray
    below_70_percent: FloatArray
    above_180_percent: FloatArray
    above_250_percent: FloatArray
    in_range_percent: FloatArray
    below_range_breach: BoolArray  # the CGM-TBR condition
    shown: dict[str, FloatArray]  # the values every CGM-* alert shows


class WindowInputs:
    """What the window rules judge, for every patient and day; a figure several rules share is
    computed once, when the first of them asks for it."""

    def __init__(
        self, matrix: DailyMatrix, params: RuleParameters, targets: PatientArrays, now_s: float | None
    ) -> None:
        self.matrix = matrix
        self.params = params
        self.targets = targets
        self.now_s = now_s
        self.shape = matrix.shape

    def severity(self, rank: int) -> StatusCodes:
        return np.full(self.shape, rank, dtype=np.int8)

    @cached_property
    def home(self) -> HomeBloodPressureWindows:
        """The W7 home-BP average (§1.3, §7): days 2..7 of the 7-day window."""
        matrix = self.matrix
        return home_blood_pressure_windows(matrix["bp_n"], matrix["bp_sys"], matrix["bp_dia"], self.params)

    @cached_property
    def home_values(self) -> dict[str, FloatArray]:
        home = self.home
        return {
            "w7_systolic_mmhg": home.systolic_mmhg,
            "w7_diastolic_mmhg": home.diastolic_mmhg,
            "w7_readings": home.readings,
        }

    @cached_property
    def above_goal(self) -> BoolArray:
        """The W7 mean at or above the patient's goal: the BP-CTRL-1 condition."""
        home, targets = self.home, self.targets
        return at_or_above_goal(
            home.systolic_mmhg,
            home.diastolic_mmhg,
            targets.goal_systolic_mmhg[:, None],
            targets.goal_diastolic_mmhg[:, None],
        )

    @cached_property
    def above_goal_values(self) -> dict[str, FloatArray]:
        return dict(
            self.home_values,
            goal_systolic_mmhg=np.broadcast_to(self.targets.goal_systolic_mmhg[:, None], self.shape),
            goal_diastolic_mmhg=np.broadcast_to(self.targets.goal_diastolic_mmhg[:, None], self.shape),
        )

    @cached_property
    def morning_evening(self) -> dict[str, FloatArray]:
        """Morning and evening means over the W7 window (BP-AM-1, BP-AM-2)."""
        matrix, window = self.matrix, self.home.window
        morning_n, evening_n = window.sum(matrix["am_n"]), window.sum(matrix["pm_n"])
        return {
            "morning_systolic_mmhg": window.sum(matrix["am_sys"]) / morning_n,
            "morning_diastolic_mmhg": window.sum(matrix["am_dia"]) / morning_n,
            "morning_readings": morning_n,
            "evening_systolic_mmhg": window.sum(matrix["pm_sys"]) / evening_n,
            "evening_diastolic_mmhg": window.sum(matrix["pm_dia"]) / evening_n,
            "evening_readings": evening_n,
        }

    @cached_property
    def morning_evening_known(self) -> BoolArray:
        means, least = self.morning_evening, self.params.am_min_readings
        return np.asarray((means["morning_readings"] >= least) & (means["evening_readings"] >= least))

    @cached_property
    def cgm(self) -> CgmWindows:
        matrix, params, days = self.matrix, self.params, self.params.cgm_days
        readings = rolling_sum(matrix["cgm_n"], days)
        wear = rolling_sum(matrix["cgm_slots"], days) / (days * (24 * 60 // params.cgm_slot_minutes))
        cgm_user = rolling_sum(matrix["cgm_n"], 2 * days) > 0
        ranges = range_percentages(
            readings,
            *(rolling_sum(matrix[name], days) for name in ("cgm_lt54", "cgm_lt70", "cgm_gt180", "cgm_gt250")),
        )
        older = self.targets.older_or_high_risk[:, None]
        below_range_breach = (ranges["below_54"] >= 1.0) | (ranges["below_70"] >= np.where(older, 1.0, 4.0))
        return CgmWindows(
            readings=readings,
            wear_fraction=wear,
            cgm_user=cgm_user,
            sufficient=cgm_user & (wear >= params.cgm_min_wear),
            below_54_percent=ranges["below_54"],
            below_70_percent=ranges["below_70"],
            above_180_percent=ranges["above_180"],
            above_250_percent=ranges["above_250"],
            in_range_percent=ranges["in_range_70_180"],
            below_range_breach=below_range_breach,
            shown={
                "tbr_lt54_percent": ranges["below_54"],
                "tbr_lt70_percent": ranges["below_70"],
                "tar_gt180_percent": ranges["above_180"],
                "tar_gt250_percent": ranges["above_250"],
                "cgm_wear_fraction": wear,
            },
        )

    @cached_property
    def cgm_mean_mg_dl(self) -> FloatArray:
        return np.asarray(rolling_sum(self.matrix["cgm_sum"], self.params.cgm_days) / self.cgm.readings)


# ==================================================================================================
# Home blood pressure


def bp_ctrl_1(inputs: WindowInputs) -> WindowResult:
    """BP-CTRL-1: W7 mean at or above the patient's goal, systolic or diastolic ([1][6][9][11][12])."""
    return WindowResult(
        "BP-CTRL-1",
        _status(inputs.above_goal, inputs.home.sufficient),
        inputs.severity(WARNING),
        inputs.above_goal_values,
        inputs.params.w7_days,
    )


def bp_ctrl_2(inputs: WindowInputs) -> WindowResult:
    """BP-CTRL-2: BP-CTRL-1 in 2 consecutive review windows (non-overlapping: this one and the one
    7 days before) ([17])."""
    home, above_goal, days = inputs.home, inputs.above_goal, inputs.params.w7_days
    fired_before = shift_days((above_goal & home.sufficient).astype(np.float64), days) > 0
    known_before = shift_days(home.sufficient.astype(np.float64), days) > 0
    return WindowResult(
        "BP-CTRL-2",
        _status(above_goal & home.sufficient & fired_before, home.sufficient & (known_before | ~above_goal)),
        inputs.severity(WARNING),
        dict(
            inputs.above_goal_values,
            previous_w7_systolic_mmhg=shift_days(home.systolic_mmhg, days, np.nan),
            previous_w7_diastolic_mmhg=shift_days(home.diastolic_mmhg, days, np.nan),
        ),
        2 * days,
    )


def bp_ctrl_3(inputs: WindowInputs) -> WindowResult:
    """BP-CTRL-3: W7 mean at or above the stage-2 home equivalent ([1][9])."""
    home, params = inputs.home, inputs.params
    stage_2 = at_or_above_goal(
        home.systolic_mmhg,
        home.diastolic_mmhg,
        np.asarray(params.stage2_systolic_mmhg),
        np.asarray(params.stage2_diastolic_mmhg),
    )
    return WindowResult(
        "BP-CTRL-3",
        _status(stage_2, home.sufficient),
        inputs.severity(WARNING),
        dict(
            inputs.home_values,
            stage2_systolic_mmhg=np.full(inputs.shape, params.stage2_systolic_mmhg),
            stage2_diastolic_mmhg=np.full(inputs.shape, params.stage2_diastolic_mmhg),
        ),
        params.w7_days,
    )


def bp_am_1(inputs: WindowInputs) -> WindowResult:
    """BP-AM-1: morning W7 mean >= 135/85 while the evening mean is below it (masked morning
    hypertension, [20][13])."""
    means, params = inputs.morning_evening, inputs.params
    morning_high = (means["morning_systolic_mmhg"] >= params.am_systolic_mmhg) | (
        means["morning_diastolic_mmhg"] >= params.am_diastolic_mmhg
    )
    evening_high = (means["evening_systolic_mmhg"] >= params.am_systolic_mmhg) | (
        means["evening_diastolic_mmhg"] >= params.am_diastolic_mmhg
    )
    return WindowResult(
        "BP-AM-1",
        _status(morning_high & ~evening_high, inputs.morning_evening_known),
        inputs.severity(INFO),
        means,
        params.w7_days,
    )


def bp_am_2(inputs: WindowInputs) -> WindowResult:
    """BP-AM-2: morning minus evening mean systolic >= 20 mmHg ([21])."""
    means, params = inputs.morning_evening, inputs.params
    morning_minus_evening = means["morning_systolic_mmhg"] - means["evening_systolic_mmhg"]
    return WindowResult(
        "BP-AM-2",
        _status(morning_minus_evening >= params.am_difference_mmhg, inputs.morning_evening_known),
        inputs.severity(INFO),
        dict(means, morning_minus_evening_systolic_mmhg=morning_minus_evening),
        params.w7_days,
    )


def bp_trend_1(inputs: WindowInputs) -> WindowResult:
    """BP-TREND-1: EWMA or upper CUSUM of daily mean systolic against the patient's own 28-day
    baseline ([52][53][54] DEFAULT); a warning when BP-CTRL-1 also fires."""
    matrix, params = inputs.matrix, inputs.params
    daily_systolic = matrix["bp_sys"] / matrix["bp_n"]
    daily_systolic = np.where(matrix["bp_n"] > 0, daily_systolic, np.nan)
    baseline = rolling_baseline(daily_systolic, params.trend_baseline_days, params.trend_window_days)
    shift = upward_shift(
        daily_systolic,
        baseline,
        params.trend_window_days,
        params.ewma_lambda,
        params.ewma_l,
        params.cusum_k_sigma,
        params.cusum_h_sigma,
    )
    slope, slope_days = rolling_slope(daily_systolic, params.trend_window_days)
    known = (baseline.days >= params.trend_min_baseline_days) & (shift.points >= params.slope_min_days)
    known &= baseline.sigma > 0
    also_above_goal = inputs.above_goal & inputs.home.sufficient
    return WindowResult(
        "BP-TREND-1",
        _status(shift.ewma_alarm | shift.cusum_alarm, known),
        np.where(also_above_goal, WARNING, INFO).astype(np.int8),
        {
            "baseline_systolic_mmhg": baseline.mean,
            "baseline_sigma_mmhg": baseline.sigma,
            "baseline_days": baseline.days,
            "ewma_systolic_mmhg": shift.ewma,
            "ewma_limit_mmhg": shift.ewma_limit,
            "cusum_hi_mmhg": shift.cusum_hi,
            "cusum_h_mmhg": shift.cusum_h,
            "slope_mmhg_per_day": np.where(slope_days >= params.slope_min_days, slope, np.nan),
        },
        params.trend_baseline_days + params.trend_window_days,
    )


# ==================================================================================================
# Glucose control and recurrent hypoglycaemia


def glu_ctrl_1(inputs: WindowInputs) -> WindowResult:
    """GLU-CTRL-1: 7-day mean fasting glucose not at target, with >= 3 fasting values; referral
    suggested when the previous window was also above ([41][18])."""
    matrix, params, targets = inputs.matrix, inputs.params, inputs.targets
    days = params.glu_window_days
    fasting_values = rolling_sum(matrix["fast_n"], days)
    fasting_mean = rolling_sum(matrix["fast_sum"], days) / fasting_values
    limit = targets.fasting_limit_mg_dl[:, None]
    above = np.where(
        targets.fasting_limit_inclusive[:, None],
        fasting_mean >= limit - THRESHOLD_EPSILON,
        fasting_mean > limit,
    )
    known = fasting_values >= params.glu_min_values
    above_before = shift_days((above & known).astype(np.float64), days) > 0
    return WindowResult(
        "GLU-CTRL-1",
        _status(above, known),
        inputs.severity(WARNING),
        {
            "fasting_mean_mg_dl": fasting_mean,
            "fasting_values": fasting_values,
            "fasting_limit_mg_dl": np.broadcast_to(limit, inputs.shape),
            "suggest_referral": (above & known & above_before).astype(np.float64),
        },
        days,
    )


def glu_ctrl_2(inputs: WindowInputs) -> WindowResult:
    """GLU-CTRL-2: 7-day mean post-prandial glucose >= 180 mg/dL with >= 3 values (DEFAULT count)
    ([31][41])."""
    matrix, params = inputs.matrix, inputs.params
    days = params.glu_window_days
    postprandial_values = rolling_sum(matrix["pp_n"], days)
    postprandial_mean = rolling_sum(matrix["pp_sum"], days) / postprandial_values
    limit = inputs.targets.postprandial_limit_mg_dl[:, None]
    return WindowResult(
        "GLU-CTRL-2",
        _status(postprandial_mean >= limit - THRESHOLD_EPSILON, postprandial_values >= params.glu_min_values),
        inputs.severity(INFO),
        {
            "postprandial_mean_mg_dl": postprandial_mean,
            "postprandial_values": postprandial_values,
            "postprandial_limit_mg_dl": np.broadcast_to(limit, inputs.shape),
        },
        days,
    )


def glu_hypo_rec(inputs: WindowInputs) -> WindowResult:
    """GLU-HYPO-REC: >= 2 level-1 readings in 7 days, or any level-2 reading in 14 days ([30] DEFAULT
    counts)."""
    matrix, params = inputs.matrix, inputs.params
    level_1 = rolling_sum(matrix["hypo1_n"], params.hypo_rec_l1_days)
    level_2 = rolling_sum(matrix["hypo2_n"], params.hypo_rec_l2_days)
    glucose_seen = rolling_sum(matrix["any_n"], params.hypo_rec_l2_days) > 0
    return WindowResult(
        "GLU-HYPO-REC",
        _status((level_1 >= params.hypo_rec_l1_count) | (level_2 >= 1), glucose_seen),
        inputs.severity(WARNING),
        {"level1_in_7_days": level_1, "level2_in_14_days": level_2},
        params.hypo_rec_l2_days,
    )


# ==================================================================================================
# CGM metrics over 14 days (Battelino 2019 [32][33])


def cgm_suff(inputs: WindowInputs) -> WindowResult:
    """CGM-SUFF: CGM data present, but < 70 % of the 15-minute slots of 14 days covered ([32][33]);
    the other CGM-* rules are then unknown."""
    cgm, days = inputs.cgm, inputs.params.cgm_days
    return WindowResult(
        "CGM-SUFF",
        _status(~cgm.sufficient, cgm.cgm_user),
        inputs.severity(INFO),
        {"cgm_wear_fraction": cgm.wear_fraction, "cgm_days": np.full(inputs.shape, float(days))},
        days,
    )


def cgm_tbr(inputs: WindowInputs) -> WindowResult:
    """CGM-TBR: time below 54 >= 1 %, or below 70 >= 4 % (older adults: >= 1 %) ([33])."""
    cgm = inputs.cgm
    return WindowResult(
        "CGM-TBR",
        _status(cgm.below_range_breach, cgm.sufficient),
        inputs.severity(WARNING),
        cgm.shown,
        inputs.params.cgm_days,
    )


def cgm_tar(inputs: WindowInputs) -> WindowResult:
    """CGM-TAR: time above 250 >= 5 % (older adults: >= 10 %) is a warning; above 180 >= 25 % is
    info ([33])."""
    cgm = inputs.cgm
    above_250 = cgm.above_250_percent >= np.where(inputs.targets.older_or_high_risk[:, None], 10.0, 5.0)
    above_180 = cgm.above_180_percent >= 25.0
    return WindowResult(
        "CGM-TAR",
        _status(above_250 | above_180, cgm.sufficient),
        np.where(above_250, WARNING, INFO).astype(np.int8),
        cgm.shown,
        inputs.params.cgm_days,
    )


def cgm_tir(inputs: WindowInputs) -> WindowResult:
    """CGM-TIR: time in range 70-180 < 70 % (older adults: < 50 %) ([33])."""
    cgm = inputs.cgm
    goal = np.where(inputs.targets.older_or_high_risk[:, None], 50.0, 70.0)
    return WindowResult(
        "CGM-TIR",
        _status(cgm.in_range_percent < goal, cgm.sufficient),
        inputs.severity(INFO),
        dict(cgm.shown, tir_percent=cgm.in_range_percent),
        inputs.params.cgm_days,
    )


def cgm_cv(inputs: WindowInputs) -> WindowResult:
    """CGM-CV: %CV > 36; a warning together with a CGM-TBR breach ([32][34])."""
    matrix, cgm, days = inputs.matrix, inputs.cgm, inputs.params.cgm_days
    cv = coefficient_of_variation_percent(
        cgm.readings, rolling_sum(matrix["cgm_sum"], days), rolling_sum(matrix["cgm_sumsq"], days)
    )
    return WindowResult(
        "CGM-CV",
        _status(cv > CGM_CV_LIMIT_PERCENT, cgm.sufficient),
        np.where(cgm.below_range_breach, WARNING, INFO).astype(np.int8),
        dict(cgm.shown, cv_percent=cv, mean_glucose_mg_dl=inputs.cgm_mean_mg_dl),
        days,
    )


def cgm_gri(inputs: WindowInputs) -> WindowResult:
    """CGM-GRI: Glycemia Risk Index > 60, zone D or E ([36])."""
    cgm = inputs.cgm
    very_low, low = cgm.below_54_percent, cgm.below_70_percent - cgm.below_54_percent
    very_high, high = cgm.above_250_percent, cgm.above_180_percent - cgm.above_250_percent
    gri = np.minimum(
        100.0,
        GRI_VERY_LOW_WEIGHT * very_low
        + GRI_LOW_WEIGHT * low
        + GRI_VERY_HIGH_WEIGHT * very_high
        + GRI_HIGH_WEIGHT * high,
    )
    return WindowResult(
        "CGM-GRI",
        _status(gri > GRI_ZONE_D, cgm.sufficient),
        inputs.severity(WARNING),
        dict(cgm.shown, gri=gri),
        inputs.params.cgm_days,
    )


def cgm_gmi(inputs: WindowInputs) -> WindowResult:
    """CGM-GMI: GMI rose >= 0.5 points against the previous 14 days ([35] DEFAULT delta)."""
    cgm, params, days = inputs.cgm, inputs.params, inputs.params.cgm_days
    gmi = gmi_percent(inputs.cgm_mean_mg_dl)
    previous_gmi = shift_days(gmi, days, np.nan)
    sufficient_before = shift_days(cgm.sufficient.astype(np.float64), days) > 0
    rise = gmi - previous_gmi
    return WindowResult(
        "CGM-GMI",
        _status(rise >= params.gmi_rise_points - THRESHOLD_EPSILON, cgm.sufficient & sufficient_before),
        inputs.severity(INFO),
        {"gmi_percent": gmi, "previous_gmi_percent": previous_gmi, "gmi_rise_points": rise},
        2 * days,
    )


# ==================================================================================================
# Data quality


def dq_01(inputs: WindowInputs) -> WindowResult:
    """DQ-01: stale data ([58] DEFAULT): no reading for 7 days, 3 in titration, 30 minutes for a live
    CGM. CGM users are judged on their sensor only while it has sent data within the last day (a
    removed sensor is a wear issue). Judged as of the end of each day, or of `now` for the day that
    contains it (the sweep runs mid-day)."""
    matrix, params = inputs.matrix, inputs.params
    assert matrix.last_reading_s is not None and matrix.last_cgm_s is not None
    as_of = matrix.day_end_s if inputs.now_s is None else np.minimum(matrix.day_end_s, inputs.now_s)
    last = np.fmax.accumulate(
        np.where(np.isnan(matrix.last_reading_s), -np.inf, matrix.last_reading_s), axis=1
    )
    last_cgm = np.fmax.accumulate(np.where(np.isnan(matrix.last_cgm_s), -np.inf, matrix.last_cgm_s), axis=1)
    seen = np.isfinite(last)
    titration = inputs.targets.titration[:, None]
    limit = np.where(titration, params.stale_titration.total_seconds(), params.stale_stable.total_seconds())
    age = as_of - last
    cgm_age = as_of - last_cgm
    cgm_live = np.isfinite(last_cgm) & (cgm_age <= SECONDS_PER_DAY)
    stale = np.where(cgm_live, cgm_age > params.stale_cgm.total_seconds(), age > limit)
    return WindowResult(
        "DQ-01",
        _status(stale, seen),
        np.broadcast_to(np.where(titration, WARNING, INFO), inputs.shape).astype(np.int8),
        {
            "hours_since_last_reading": np.where(seen, age / 3600.0, np.nan),
            "stale_after_hours": np.broadcast_to(limit / 3600.0, inputs.shape).copy(),
        },
        0,
    )


def dq_03(inputs: WindowInputs) -> WindowResult:
    """DQ-03: < 16 distinct data days in a rolling 30 ([57] CPT 99454), once the patient has had data
    for 30 days (from the first reading)."""
    matrix, params = inputs.matrix, inputs.params
    data_days = days_with_data(matrix["any_n"], params.sufficiency_days)
    first_seen = np.cumsum(matrix["any_n"] > 0, axis=1) > 0
    days_since_first = np.cumsum(first_seen, axis=1)
    return WindowResult(
        "DQ-03",
        _status(data_days < params.sufficiency_min_days, days_since_first >= params.sufficiency_days),
        inputs.severity(INFO),
        {"data_days_in_30": data_days},
        params.sufficiency_days,
    )


WindowRule = Callable[[WindowInputs], WindowResult]

# Rule id -> the rule, in the order their results are given.
WINDOW_RULES: dict[str, WindowRule] = {
    "BP-CTRL-1": bp_ctrl_1,
    "BP-CTRL-2": bp_ctrl_2,
    "BP-CTRL-3": bp_ctrl_3,
    "BP-AM-1": bp_am_1,
    "BP-AM-2": bp_am_2,
    "BP-TREND-1": bp_trend_1,
    "GLU-CTRL-1": glu_ctrl_1,
    "GLU-CTRL-2": glu_ctrl_2,
    "GLU-HYPO-REC": glu_hypo_rec,
    "CGM-SUFF": cgm_suff,
    "CGM-TBR": cgm_tbr,
    "CGM-TAR": cgm_tar,
    "CGM-TIR": cgm_tir,
    "CGM-CV": cgm_cv,
    "CGM-GRI": cgm_gri,
    "CGM-GMI": cgm_gmi,
    "DQ-01": dq_01,
    "DQ-03": dq_03,
}


def evaluate_windows(
    matrix: DailyMatrix,
    params: RuleParameters,
    targets: PatientArrays,
    now_s: float | None = None,
) -> list[WindowResult]:
    """Every window / time-based rule for every patient and day. With `now_s`, days are judged as of
    `now` where it falls before their end (the stale-data rule during a mid-day sweep)."""
    inputs = WindowInputs(matrix, params, targets, now_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [rule(inputs) for rule in WINDOW_RULES.values()]
