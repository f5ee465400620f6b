"""Window and time-based rules, vectorised over patients x days (numpy).

The same code serves the periodic sweep over every patient (bench/alerts_sweep.py: 10,000 patients x
90 days) and the per-reading evaluation of one patient (a 1 x days matrix), so the two paths cannot
disagree. Each rule yields, for every patient and every day t, a status "as of the end of day t"
(or as of `now` on the last day): FIRING, CLEAR or UNKNOWN (insufficient data).

The numbers the rules judge (home-BP 7-day means, BP against goal, glucose ranges, GMI, CV, days with
data) come from alerts/summaries.py, the one module of clinical summaries, so that an alert and the
panel or patient page that shows it state the same figure. Home-BP averages follow clinical-rules.md
§1.3 / §7 "W7" (see alerts.summaries); readings with device status flags or NaN are excluded (DQ-02,
[27][61]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.model import Observation, ObservationKind, OutcomeStatus
from alerts.profiles import THRESHOLD_EPSILON, RuleParameters
from alerts.summaries import (
    HIGH_ABOVE_MG_DL,
    LOW_BELOW_MG_DL,
    VERY_HIGH_ABOVE_MG_DL,
    VERY_LOW_BELOW_MG_DL,
    at_or_above_goal,
    coefficient_of_variation_percent,
    days_with_data,
    gmi_percent,
    home_blood_pressure_windows,
    range_percentages,
    whole_mg_dl,
)
from alerts.trends import rolling_baseline, rolling_slope, rolling_sum, shift_days, upward_shift
from vitals.payload import AlertSeverity
from vitals.readings import Meal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_DAY = 86_400
UNKNOWN, CLEAR, FIRING = np.int8(0), np.int8(1), np.int8(2)
STATUS_OF_CODE = {0: OutcomeStatus.UNKNOWN, 1: OutcomeStatus.CLEAR, 2: OutcomeStatus.FIRING}
SEVERITY_OF_RANK = {0: AlertSeverity.INFO, 1: AlertSeverity.WARNING, 2: AlertSeverity.URGENT}
MEAL_CODES = {
    None: 0,
    Meal.PREPRANDIAL: 1,
    Meal.POSTPRANDIAL: 2,
    Meal.FASTING: 3,
    Meal.CASUAL: 4,
    Meal.BEDTIME: 5,
}
KIND_CODES = {ObservationKind.BLOOD_PRESSURE: 0, ObservationKind.GLUCOSE: 1, ObservationKind.CGM: 2}
GRI_WEIGHTS = (3.0, 2.4, 1.6, 0.8)  # VLow, Low, VHigh, High (Klonoff 2023 [36])
GRI_ZONE_D = 60.0  # zones D/E are GRI > 60 ([36])


@dataclass(frozen=True, slots=True)
class Columns:
    """Readings as columns (one entry per reading). Times in UTC seconds; local time via day index."""

    patient: IntArray  # patient index 0..P-1
    day: IntArray  # local day index 0..D-1
    local_hour: FloatArray  # local hour of day (0-24)
    local_seconds: FloatArray  # local seconds since day 0 starts (for CGM 15-min slots)
    utc_seconds: FloatArray
    kind: npt.NDArray[np.int8]  # KIND_CODES
    excluded_from_averages: BoolArray
    systolic_mmhg: FloatArray
    diastolic_mmhg: FloatArray
    glucose_mg_dl: FloatArray
    meal: npt.NDArray[np.int8]  # MEAL_CODES


@dataclass(slots=True)
class DailyMatrix:
    """Per patient and local day: sums and counts the window rules need. Shape (P, D)."""

    patient_ids: list[str]
    day0: date
    day_end_s: FloatArray  # UTC seconds at which each patient's local day t ends
    arrays: dict[str, FloatArray] = field(default_factory=dict)
    last_reading_s: FloatArray | None = None  # (P, D): latest reading time on that day, NaN if none
    last_cgm_s: FloatArray | None = None

    def __getitem__(self, name: str) -> FloatArray:
        return self.arrays[name]

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.patient_ids), self.day_end_s.shape[1])


_FIELDS = (
    "any_n",
    "bp_n",
    "bp_sys",
    "bp_dia",
    "am_n",
    "am_sys",
    "am_dia",
    "pm_n",
    "pm_sys",
    "pm_dia",
    "fast_n",
    "fast_sum",
    "pp_n",
    "pp_sum",
    "hypo1_n",
    "hypo2_n",
    "cgm_n",
    "cgm_sum",
    "cgm_sumsq",
    "cgm_lt54",
    "cgm_lt70",
    "cgm_gt180",
    "cgm_gt250",
    "cgm_slots",
)


def build_matrix(
    cols: Columns,
    patient_ids: list[str],
    days: int,
    day0: date,
    day0_start_s: FloatArray,
    params: RuleParameters,
) -> DailyMatrix:
    """Bin readings into the daily matrix with np.add.at (no Python loop over readings)."""
    p = len(patient_ids)
    shape = (p, days)
    arrays = {name: np.zeros(shape) for name in _FIELDS}
    ok = (cols.day >= 0) & (cols.day < days)
    pi, di = cols.patient[ok], cols.day[ok]
    kind, excl = cols.kind[ok], cols.excluded_from_averages[ok]
    sys_, dia, glu = cols.systolic_mmhg[ok], cols.diastolic_mmhg[ok], cols.glucose_mg_dl[ok]
    hour, meal = cols.local_hour[ok], cols.meal[ok]

    flat = pi * days + di  # one bin per (patient, day); np.bincount is much faster than np.add.at

    def add(name: str, mask: BoolArray, values: FloatArray | None = None) -> None:
        weights = None if values is None else values[mask]
        counts = np.bincount(flat[mask], weights=weights, minlength=p * days)
        arrays[name] += counts.reshape(shape)

    add("any_n", np.ones(pi.shape, dtype=np.bool_))
    bp = (kind == KIND_CODES[ObservationKind.BLOOD_PRESSURE]) & ~excl & np.isfinite(sys_) & np.isfinite(dia)
    add("bp_n", bp)
    add("bp_sys", bp, sys_)
    add("bp_dia", bp, dia)
    am = bp & (hour >= params.morning_hours[0]) & (hour < params.morning_hours[1])
    pm = bp & (hour >= params.evening_hours[0]) & (hour < params.evening_hours[1])
    for prefix, mask in (("am", am), ("pm", pm)):
        add(f"{prefix}_n", mask)
        add(f"{prefix}_sys", mask, sys_)
        add(f"{prefix}_dia", mask, dia)
    smbg = (kind == KIND_CODES[ObservationKind.GLUCOSE]) & ~excl & np.isfinite(glu)
    fasting = smbg & (meal == MEAL_CODES[Meal.FASTING])
    post = smbg & (meal == MEAL_CODES[Meal.POSTPRANDIAL])
    add("fast_n", fasting)
    add("fast_sum", fasting, glu)
    add("pp_n", post)
    add("pp_sum", post, glu)
    inclusive = params.profile.hypo1_inclusive_mg_dl
    level1_or_below = (
        glu <= inclusive + THRESHOLD_EPSILON if inclusive is not None else glu < params.hypo1_mg_dl
    )
    level2 = glu < params.hypo2_mg_dl
    add("hypo1_n", smbg & level1_or_below & ~level2)
    add("hypo2_n", smbg & level2)
    cgm = (kind == KIND_CODES[ObservationKind.CGM]) & ~excl & np.isfinite(glu)
    add("cgm_n", cgm)
    add("cgm_sum", cgm, glu)
    add("cgm_sumsq", cgm, glu * glu)
    # CGM consensus bins: TBR <54, <70; TAR >180, >250; TIR 70-180 inclusive ([32][33]), on whole
    # mg/dL as the summaries bin them.
    whole = whole_mg_dl(glu)
    add("cgm_lt54", cgm & (whole < VERY_LOW_BELOW_MG_DL))
    add("cgm_lt70", cgm & (whole < LOW_BELOW_MG_DL))
    add("cgm_gt180", cgm & (whole > HIGH_ABOVE_MG_DL))
    add("cgm_gt250", cgm & (whole > VERY_HIGH_ABOVE_MG_DL))
    if np.any(cgm):
        slot_s = params.cgm_slot_minutes * 60
        slots_per_day = SECONDS_PER_DAY // slot_s
        # Distinct 15-min slots per (patient, day): mark a bitmap over CGM wearers' slots (np.unique
        # on millions of keys is several times slower).
        wearer = np.zeros(p, dtype=np.bool_)
        wearer[pi[cgm]] = True
        compact = np.cumsum(wearer) - 1
        slot = np.floor(cols.local_seconds[ok][cgm] / slot_s).astype(np.int64)
        in_range = (slot >= 0) & (slot < days * slots_per_day)
        key = compact[pi[cgm]] * (days * slots_per_day) + slot
        marks = np.zeros(int(wearer.sum()) * days * slots_per_day, dtype=np.bool_)
        marks[key[in_range]] = True
        per_day = marks.reshape(-1, days, slots_per_day).sum(axis=2)
        arrays["cgm_slots"][np.flatnonzero(wearer)] += per_day
    utc = cols.utc_seconds[ok]
    both = _max_per_bin(
        np.concatenate([flat, flat + p * days]),
        np.concatenate([utc, np.where(cgm, utc, -np.inf)]),
        2 * p * days,
    )
    last = both[: p * days].reshape(shape)
    last_cgm = both[p * days :].reshape(shape)
    day_end = day0_start_s[:, None] + SECONDS_PER_DAY * (np.arange(days, dtype=np.float64)[None, :] + 1.0)
    return DailyMatrix(patient_ids, day0, day_end, arrays, last, last_cgm)


def _max_per_bin(bins: IntArray, values: FloatArray, size: int) -> FloatArray:
    """Maximum of `values` per bin (NaN for empty bins or -inf values): one integer sort, then
    np.maximum.reduceat over each run of equal bins."""
    out = np.full(size, np.nan)
    if bins.size == 0:
        return out
    order = np.argsort(bins, kind="stable")
    sorted_bins = bins[order]
    starts = np.flatnonzero(np.r_[True, sorted_bins[1:] != sorted_bins[:-1]])
    maxima = np.maximum.reduceat(values[order], starts)
    out[sorted_bins[starts]] = np.where(np.isfinite(maxima), maxima, np.nan)
    return out


def columns_from_observations(
    observations: Sequence[Observation], patient_ids: list[str], day0: date, timezones: Sequence[str]
) -> tuple[Columns, FloatArray]:
    """Columns for a few patients' observations (per-reading path and replay), local time via zoneinfo."""
    index = {pid: i for i, pid in enumerate(patient_ids)}
    zones = [ZoneInfo(tz) for tz in timezones]
    n = len(observations)
    patient = np.zeros(n, dtype=np.int64)
    day = np.zeros(n, dtype=np.int64)
    hour = np.zeros(n)
    local_s = np.zeros(n)
    utc_s = np.zeros(n)
    kind = np.zeros(n, dtype=np.int8)
    excluded = np.zeros(n, dtype=np.bool_)
    sys_ = np.full(n, np.nan)
    dia = np.full(n, np.nan)
    glu = np.full(n, np.nan)
    meal = np.zeros(n, dtype=np.int8)
    ordinal0 = day0.toordinal()
    for i, obs in enumerate(observations):
        pidx = index[obs.patient_id]
        local = obs.measured_at.astimezone(zones[pidx])
        patient[i] = pidx
        day[i] = local.date().toordinal() - ordinal0
        hour[i] = local.hour + local.minute / 60.0 + local.second / 3600.0
        local_s[i] = day[i] * SECONDS_PER_DAY + hour[i] * 3600.0
        utc_s[i] = obs.measured_at.timestamp()
        kind[i] = KIND_CODES[obs.kind]
        excluded[i] = obs.excluded_from_averages
        sys_[i] = _nan(obs.systolic_mmhg)
        dia[i] = _nan(obs.diastolic_mmhg)
        glu[i] = _nan(obs.glucose_mg_dl)
        meal[i] = MEAL_CODES[obs.meal]
    starts = np.array(
        [
            datetime.combine(day0, datetime.min.time(), tzinfo=zone).astimezone(UTC).timestamp()
            for zone in zones
        ],
        dtype=np.float64,
    )
    cols = Columns(patient, day, hour, local_s, utc_s, kind, excluded, sys_, dia, glu, meal)
    return cols, starts


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(slots=True)
class WindowResult:
    """One rule over (P, D): status codes, severity ranks and the values that explain it."""

    rule_id: str
    status: npt.NDArray[np.int8]
    severity: npt.NDArray[np.int8]
    values: dict[str, FloatArray]
    window_days: int


def _status(fire: BoolArray, known: BoolArray) -> npt.NDArray[np.int8]:
    out = np.where(known, np.where(fire, FIRING, CLEAR), UNKNOWN)
    return out.astype(np.int8)


def _sev(shape: tuple[int, int], rank: int) -> npt.NDArray[np.int8]:
    return np.full(shape, rank, dtype=np.int8)


@dataclass(frozen=True, slots=True)
class PatientArrays:
    """Per-patient targets as arrays (P,), so the doctor's overrides apply inside the vectorised sweep."""

    goal_sys: FloatArray
    goal_dia: FloatArray
    fasting_limit: FloatArray
    fasting_inclusive: BoolArray
    pp_limit: FloatArray
    older: BoolArray
    titration: BoolArray

    @classmethod
    def from_parameters(cls, params: Sequence[RuleParameters]) -> PatientArrays:
        return cls(
            np.array([p.goal_systolic_mmhg for p in params], dtype=np.float64),
            np.array([p.goal_diastolic_mmhg for p in params], dtype=np.float64),
            np.array([p.fasting_limit_mg_dl for p in params], dtype=np.float64),
            np.array([p.fasting_limit_inclusive for p in params], dtype=np.bool_),
            np.array([p.postprandial_limit_mg_dl for p in params], dtype=np.float64),
            np.array([p.older_or_high_risk for p in params], dtype=np.bool_),
            np.array([p.titration for p in params], dtype=np.bool_),
        )

    @classmethod
    def uniform(cls, params: RuleParameters, patients: int) -> PatientArrays:
        return cls.from_parameters([params]).repeat(patients)

    def repeat(self, patients: int) -> PatientArrays:
        return PatientArrays(*(np.repeat(getattr(self, f), patients) for f in _PA_FIELDS))


_PA_FIELDS = ("goal_sys", "goal_dia", "fasting_limit", "fasting_inclusive", "pp_limit", "older", "titration")


def evaluate_windows(
    m: DailyMatrix,
    params: RuleParameters,
    targets: PatientArrays,
    now_s: float | None = None,
) -> list[WindowResult]:
    """Every window / time-based rule for every patient and day. With `now_s`, days are judged as of
    `now` where it falls before their end (the stale-data rule during a mid-day sweep)."""
    p, d = m.shape
    shape = (p, d)
    out: list[WindowResult] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        # --- W7 home BP average (§1.3, §7): days 2..7 of the 7-day window -------------------------
        home = home_blood_pressure_windows(m["bp_n"], m["bp_sys"], m["bp_dia"], params)
        w7 = home.window
        n, sys_mean, dia_mean, enough = (
            home.readings,
            home.systolic_mmhg,
            home.diastolic_mmhg,
            home.sufficient,
        )
        w7_values = {"w7_systolic_mmhg": sys_mean, "w7_diastolic_mmhg": dia_mean, "w7_readings": n}
        goal_s, goal_d = targets.goal_sys[:, None], targets.goal_dia[:, None]
        ctrl1 = at_or_above_goal(sys_mean, dia_mean, goal_s, goal_d)
        vals = dict(
            w7_values,
            goal_systolic_mmhg=np.broadcast_to(goal_s, shape),
            goal_diastolic_mmhg=np.broadcast_to(goal_d, shape),
        )
        out.append(WindowResult("BP-CTRL-1", _status(ctrl1, enough), _sev(shape, 1), vals, params.w7_days))
        # BP-CTRL-2: CTRL-1 in 2 consecutive review windows (non-overlapping: t and t-7) ([17]).
        prev_fire = shift_days((ctrl1 & enough).astype(np.float64), params.w7_days) > 0
        prev_known = shift_days(enough.astype(np.float64), params.w7_days) > 0
        fire2 = ctrl1 & enough & prev_fire
        known2 = enough & (prev_known | ~ctrl1)
        prev_sys = shift_days(sys_mean, params.w7_days, np.nan)
        prev_dia = shift_days(dia_mean, params.w7_days, np.nan)
        out.append(
            WindowResult(
                "BP-CTRL-2",
                _status(fire2, known2),
                _sev(shape, 1),
                dict(vals, previous_w7_systolic_mmhg=prev_sys, previous_w7_diastolic_mmhg=prev_dia),
                2 * params.w7_days,
            )
        )
        ctrl3 = at_or_above_goal(
            sys_mean,
            dia_mean,
            np.asarray(params.stage2_systolic_mmhg),
            np.asarray(params.stage2_diastolic_mmhg),
        )
        out.append(
            WindowResult(
                "BP-CTRL-3",
                _status(ctrl3, enough),
                _sev(shape, 1),
                dict(
                    w7_values,
                    stage2_systolic_mmhg=np.full(shape, params.stage2_systolic_mmhg),
                    stage2_diastolic_mmhg=np.full(shape, params.stage2_diastolic_mmhg),
                ),
                params.w7_days,
            )
        )
        # --- Morning / evening (BP-AM-1 [20][13], BP-AM-2 [21]) ------------------------------------
        am_n, pm_n = w7.sum(m["am_n"]), w7.sum(m["pm_n"])
        am_s, am_d = w7.sum(m["am_sys"]) / am_n, w7.sum(m["am_dia"]) / am_n
        pm_s, pm_d = w7.sum(m["pm_sys"]) / pm_n, w7.sum(m["pm_dia"]) / pm_n
        am_known = (am_n >= params.am_min_readings) & (pm_n >= params.am_min_readings)
        am_high = (am_s >= params.am_systolic_mmhg) | (am_d >= params.am_diastolic_mmhg)
        pm_high = (pm_s >= params.am_systolic_mmhg) | (pm_d >= params.am_diastolic_mmhg)
        am_vals = {
            "morning_systolic_mmhg": am_s,
            "morning_diastolic_mmhg": am_d,
            "morning_readings": am_n,
            "evening_systolic_mmhg": pm_s,
            "evening_diastolic_mmhg": pm_d,
            "evening_readings": pm_n,
        }
        out.append(
            WindowResult(
                "BP-AM-1", _status(am_high & ~pm_high, am_known), _sev(shape, 0), am_vals, params.w7_days
            )
        )
        medif = am_s - pm_s
        out.append(
            WindowResult(
                "BP-AM-2",
                _status(medif >= params.am_difference_mmhg, am_known),
                _sev(shape, 0),
                dict(am_vals, morning_minus_evening_systolic_mmhg=medif),
                params.w7_days,
            )
        )
        # --- BP-TREND-1: EWMA / CUSUM vs the patient's own 28-day baseline ([52][53][54] DEFAULT) ---
        daily_sbp = m["bp_sys"] / m["bp_n"]
        daily_sbp = np.where(m["bp_n"] > 0, daily_sbp, np.nan)
        base = rolling_baseline(daily_sbp, params.trend_baseline_days, params.trend_window_days)
        shift = upward_shift(
            daily_sbp,
            base,
            params.trend_window_days,
            params.ewma_lambda,
            params.ewma_l,
            params.cusum_k_sigma,
            params.cusum_h_sigma,
        )
        slope, slope_n = rolling_slope(daily_sbp, params.trend_window_days)
        trend_known = (base.days >= params.trend_min_baseline_days) & (shift.points >= params.slope_min_days)
        trend_known &= base.sigma > 0
        trend_fire = shift.ewma_alarm | shift.cusum_alarm
        trend_sev = np.where(ctrl1 & enough, 1, 0).astype(np.int8)  # warning if crossing BP-CTRL-1
        out.append(
            WindowResult(
                "BP-TREND-1",
                _status(trend_fire, trend_known),
                trend_sev,
                {
                    "baseline_systolic_mmhg": base.mean,
                    "baseline_sigma_mmhg": base.sigma,
                    "baseline_days": base.days,
                    "ewma_systolic_mmhg": shift.ewma,
                    "ewma_limit_mmhg": shift.ewma_limit,
                    "cusum_hi_mmhg": shift.cusum_hi,
                    "cusum_h_mmhg": shift.cusum_h,
                    "slope_mmhg_per_day": np.where(slope_n >= params.slope_min_days, slope, np.nan),
                },
                params.trend_baseline_days + params.trend_window_days,
            )
        )
        # --- Glucose control (GLU-CTRL-1 [41][18], GLU-CTRL-2 [31][41]) ------------------------------
        gw = params.glu_window_days
        fn = rolling_sum(m["fast_n"], gw)
        fmean = rolling_sum(m["fast_sum"], gw) / fn
        flim = targets.fasting_limit[:, None]
        fhigh = np.where(targets.fasting_inclusive[:, None], fmean >= flim - THRESHOLD_EPSILON, fmean > flim)
        fknown = fn >= params.glu_min_values
        prev_f = shift_days((fhigh & fknown).astype(np.float64), gw) > 0
        out.append(
            WindowResult(
                "GLU-CTRL-1",
                _status(fhigh, fknown),
                _sev(shape, 1),
                {
                    "fasting_mean_mg_dl": fmean,
                    "fasting_values": fn,
                    "fasting_limit_mg_dl": np.broadcast_to(flim, shape),
                    "suggest_referral": (fhigh & fknown & prev_f).astype(np.float64),
                },
                gw,
            )
        )
        pn = rolling_sum(m["pp_n"], gw)
        pmean = rolling_sum(m["pp_sum"], gw) / pn
        plim = targets.pp_limit[:, None]
        out.append(
            WindowResult(
                "GLU-CTRL-2",
                _status(pmean >= plim - THRESHOLD_EPSILON, pn >= params.glu_min_values),
                _sev(shape, 0),
                {
                    "postprandial_mean_mg_dl": pmean,
                    "postprandial_values": pn,
                    "postprandial_limit_mg_dl": np.broadcast_to(plim, shape),
                },
                gw,
            )
        )
        # GLU-HYPO-REC: >= 2 Level-1 in 7 days or any Level-2 in 14 days ([30] DEFAULT counts).
        l1 = rolling_sum(m["hypo1_n"], params.hypo_rec_l1_days)
        l2 = rolling_sum(m["hypo2_n"], params.hypo_rec_l2_days)
        glucose_seen = rolling_sum(m["any_n"], params.hypo_rec_l2_days) > 0
        out.append(
            WindowResult(
                "GLU-HYPO-REC",
                _status((l1 >= params.hypo_rec_l1_count) | (l2 >= 1), glucose_seen),
                _sev(shape, 1),
                {"level1_in_7_days": l1, "level2_in_14_days": l2},
                params.hypo_rec_l2_days,
            )
        )
        out.extend(_cgm_rules(m, params, targets, shape))
        out.extend(_data_rules(m, params, targets, shape, now_s))
    return out


def _cgm_rules(
    m: DailyMatrix, params: RuleParameters, targets: PatientArrays, shape: tuple[int, int]
) -> list[WindowResult]:
    cd = params.cgm_days
    n = rolling_sum(m["cgm_n"], cd)
    slots = rolling_sum(m["cgm_slots"], cd)
    expected = cd * (24 * 60 // params.cgm_slot_minutes)
    wear = slots / expected
    cgm_patient = rolling_sum(m["cgm_n"], 2 * cd) > 0
    sufficient = cgm_patient & (wear >= params.cgm_min_wear)
    out = [
        WindowResult(
            "CGM-SUFF",
            _status(~sufficient, cgm_patient),
            _sev(shape, 0),
            {"cgm_wear_fraction": wear, "cgm_days": np.full(shape, float(cd))},
            cd,
        )
    ]
    ranges = range_percentages(
        n, *(rolling_sum(m[name], cd) for name in ("cgm_lt54", "cgm_lt70", "cgm_gt180", "cgm_gt250"))
    )
    pct = {
        "cgm_lt54": ranges["below_54"],
        "cgm_lt70": ranges["below_70"],
        "cgm_gt180": ranges["above_180"],
        "cgm_gt250": ranges["above_250"],
    }
    older = targets.older[:, None]
    tbr = (pct["cgm_lt54"] >= 1.0) | (pct["cgm_lt70"] >= np.where(older, 1.0, 4.0))
    common = {
        "tbr_lt54_percent": pct["cgm_lt54"],
        "tbr_lt70_percent": pct["cgm_lt70"],
        "tar_gt180_percent": pct["cgm_gt180"],
        "tar_gt250_percent": pct["cgm_gt250"],
        "cgm_wear_fraction": wear,
    }
    out.append(WindowResult("CGM-TBR", _status(tbr, sufficient), _sev(shape, 1), common, cd))
    tar_warn = pct["cgm_gt250"] >= np.where(older, 10.0, 5.0)
    tar_info = pct["cgm_gt180"] >= 25.0
    out.append(
        WindowResult(
            "CGM-TAR",
            _status(tar_warn | tar_info, sufficient),
            np.where(tar_warn, 1, 0).astype(np.int8),
            common,
            cd,
        )
    )
    tir = ranges["in_range_70_180"]
    out.append(
        WindowResult(
            "CGM-TIR",
            _status(tir < np.where(older, 50.0, 70.0), sufficient),
            _sev(shape, 0),
            dict(common, tir_percent=tir),
            cd,
        )
    )
    s, ss = rolling_sum(m["cgm_sum"], cd), rolling_sum(m["cgm_sumsq"], cd)
    mean = s / n
    cv = coefficient_of_variation_percent(n, s, ss)
    out.append(
        WindowResult(
            "CGM-CV",
            _status(cv > 36.0, sufficient),
            np.where(tbr, 1, 0).astype(np.int8),
            dict(common, cv_percent=cv, mean_glucose_mg_dl=mean),
            cd,
        )
    )
    vlow, low = pct["cgm_lt54"], pct["cgm_lt70"] - pct["cgm_lt54"]
    vhigh, high = pct["cgm_gt250"], pct["cgm_gt180"] - pct["cgm_gt250"]
    a, b, c, e = GRI_WEIGHTS
    gri = np.minimum(100.0, a * vlow + b * low + c * vhigh + e * high)
    out.append(
        WindowResult(
            "CGM-GRI", _status(gri > GRI_ZONE_D, sufficient), _sev(shape, 1), dict(common, gri=gri), cd
        )
    )
    gmi = gmi_percent(mean)
    prev_gmi = shift_days(gmi, cd, np.nan)
    prev_ok = shift_days(sufficient.astype(np.float64), cd) > 0
    rise = gmi - prev_gmi
    out.append(
        WindowResult(
            "CGM-GMI",
            _status(rise >= params.gmi_rise_points - THRESHOLD_EPSILON, sufficient & prev_ok),
            _sev(shape, 0),
            {"gmi_percent": gmi, "previous_gmi_percent": prev_gmi, "gmi_rise_points": rise},
            2 * cd,
        )
    )
    return out


def _data_rules(
    m: DailyMatrix,
    params: RuleParameters,
    targets: PatientArrays,
    shape: tuple[int, int],
    now_s: float | None,
) -> list[WindowResult]:
    assert m.last_reading_s is not None and m.last_cgm_s is not None
    # As of the end of each day, or of `now` for the day that contains it (the sweep runs mid-day).
    as_of = m.day_end_s if now_s is None else np.minimum(m.day_end_s, now_s)
    last = np.fmax.accumulate(np.where(np.isnan(m.last_reading_s), -np.inf, m.last_reading_s), axis=1)
    last_cgm = np.fmax.accumulate(np.where(np.isnan(m.last_cgm_s), -np.inf, m.last_cgm_s), axis=1)
    seen = np.isfinite(last)
    titration = targets.titration[:, None]
    limit = np.where(titration, params.stale_titration.total_seconds(), params.stale_stable.total_seconds())
    age = as_of - last
    cgm_age = as_of - last_cgm
    is_cgm = np.isfinite(last_cgm)
    # DQ-01 stale data ([58] DEFAULT): {titration 3 d | stable 7 d | CGM 30 min}; CGM users judged on
    # their sensor only while it has sent data within the last day (a removed sensor is a wear issue).
    cgm_live = is_cgm & (cgm_age <= SECONDS_PER_DAY)
    stale = np.where(cgm_live, cgm_age > params.stale_cgm.total_seconds(), age > limit)
    out = [
        WindowResult(
            "DQ-01",
            _status(stale, seen),
            np.broadcast_to(np.where(titration, 1, 0), shape).astype(np.int8),
            {
                "hours_since_last_reading": np.where(seen, age / 3600.0, np.nan),
                "stale_after_hours": np.broadcast_to(limit / 3600.0, shape).copy(),
            },
            0,
        )
    ]
    # DQ-03: < 16 distinct data days in rolling 30 ([57] CPT 99454); enrolled >= 30 days (first data).
    data_days = days_with_data(m["any_n"], params.sufficiency_days)
    first_seen = np.cumsum(m["any_n"] > 0, axis=1) > 0
    days_since_first = np.cumsum(first_seen, axis=1)
    known = days_since_first >= params.sufficiency_days
    out.append(
        WindowResult(
            "DQ-03",
            _status(data_days < params.sufficiency_min_days, known),
            _sev(shape, 0),
            {"data_days_in_30": data_days},
            params.sufficiency_days,
        )
    )
    return out


def day_start(day0: date, t: int, zone: str) -> datetime:
    return datetime.combine(day0 + timedelta(days=t), datetime.min.time(), tzinfo=ZoneInfo(zone))
