"""Readings binned per patient and local day: the input of the window rules (numpy).

The periodic sweep bins every patient's readings at once (bench/alerts_sweep.py: 10,000 patients x
90 days) and the per-reading evaluation bins one patient (a 1 x days matrix); the window rules
(alerts/window_rules/) then judge every patient and day from these per-day counts and sums.
Readings with device status flags or NaN stay out of the sums (DQ-02, [27][61]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.model import Observation, ObservationKind
from alerts.profiles import THRESHOLD_EPSILON, RuleParameters
from alerts.summaries import (
    HIGH_ABOVE_MG_DL,
    LOW_BELOW_MG_DL,
    VERY_HIGH_ABOVE_MG_DL,
    VERY_LOW_BELOW_MG_DL,
    whole_mg_dl,
)
from vitals.readings import Meal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_DAY = 86_400
MEAL_CODES = {
    None: 0,
    Meal.PREPRANDIAL: 1,
    Meal.POSTPRANDIAL: 2,
    Meal.FASTING: 3,
    Meal.CASUAL: 4,
    Meal.BEDTIME: 5,
}
KIND_CODES = {ObservationKind.BLOOD_PRESSURE: 0, ObservationKind.GLUCOSE: 1, ObservationKind.CGM: 2}


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
    patients = len(patient_ids)
    shape = (patients, days)
    arrays = {name: np.zeros(shape) for name in _FIELDS}
    ok = (cols.day >= 0) & (cols.day < days)
    patient, day = cols.patient[ok], cols.day[ok]
    kind, excl = cols.kind[ok], cols.excluded_from_averages[ok]
    systolic, diastolic, glucose = cols.systolic_mmhg[ok], cols.diastolic_mmhg[ok], cols.glucose_mg_dl[ok]
    hour, meal = cols.local_hour[ok], cols.meal[ok]

    flat = patient * days + day  # one bin per (patient, day); np.bincount is much faster than np.add.at

    def add(name: str, mask: BoolArray, values: FloatArray | None = None) -> None:
        weights = None if values is None else values[mask]
        counts = np.bincount(flat[mask], weights=weights, minlength=patients * days)
        arrays[name] += counts.reshape(shape)

    add("any_n", np.ones(patient.shape, dtype=np.bool_))
    bp = (
        (kind == KIND_CODES[ObservationKind.BLOOD_PRESSURE])
        & ~excl
        & np.isfinite(systolic)
        & np.isfinite(diastolic)
    )
    add("bp_n", bp)
    add("bp_sys", bp, systolic)
    add("bp_dia", bp, diastolic)
    am = bp & (hour >= params.morning_hours[0]) & (hour < params.morning_hours[1])
    pm = bp & (hour >= params.evening_hours[0]) & (hour < params.evening_hours[1])
    for prefix, mask in (("am", am), ("pm", pm)):
        add(f"{prefix}_n", mask)
        add(f"{prefix}_sys", mask, systolic)
        add(f"{prefix}_dia", mask, diastolic)
    smbg = (kind == KIND_CODES[ObservationKind.GLUCOSE]) & ~excl & np.isfinite(glucose)
    fasting = smbg & (meal == MEAL_CODES[Meal.FASTING])
    post = smbg & (meal == MEAL_CODES[Meal.POSTPRANDIAL])
    add("fast_n", fasting)
    add("fast_sum", fasting, glucose)
    add("pp_n", post)
    add("pp_sum", post, glucose)
    inclusive = params.profile.hypo1_inclusive_mg_dl
    level1_or_below = (
        glucose <= inclusive + THRESHOLD_EPSILON if inclusive is not None else glucose < params.hypo1_mg_dl
    )
    level2 = glucose < params.hypo2_mg_dl
    add("hypo1_n", smbg & level1_or_below & ~level2)
    add("hypo2_n", smbg & level2)
    cgm = (kind == KIND_CODES[ObservationKind.CGM]) & ~excl & np.isfinite(glucose)
    add("cgm_n", cgm)
    add("cgm_sum", cgm, glucose)
    add("cgm_sumsq", cgm, glucose * glucose)
    # CGM consensus bins: TBR <54, <70; TAR >180, >250; TIR 70-180 inclusive ([32][33]), on whole
    # mg/dL as the summaries bin them.
    whole = whole_mg_dl(glucose)
    add("cgm_lt54", cgm & (whole < VERY_LOW_BELOW_MG_DL))
    add("cgm_lt70", cgm & (whole < LOW_BELOW_MG_DL))
    add("cgm_gt180", cgm & (whole > HIGH_ABOVE_MG_DL))
    add("cgm_gt250", cgm & (whole > VERY_HIGH_ABOVE_MG_DL))
    if np.any(cgm):
        slot_s = params.cgm_slot_minutes * 60
        slots_per_day = SECONDS_PER_DAY // slot_s
        # Distinct 15-min slots per (patient, day): mark a bitmap over CGM wearers' slots (np.unique
        # on millions of keys is several times slower).
        wearer = np.zeros(patients, dtype=np.bool_)
        wearer[patient[cgm]] = True
        compact = np.cumsum(wearer) - 1
        slot = np.floor(cols.local_seconds[ok][cgm] / slot_s).astype(np.int64)
        in_range = (slot >= 0) & (slot < days * slots_per_day)
        key = compact[patient[cgm]] * (days * slots_per_day) + slot
        marks = np.zeros(int(wearer.sum()) * days * slots_per_day, dtype=np.bool_)
        marks[key[in_range]] = True
        per_day = marks.reshape(-1, days, slots_per_day).sum(axis=2)
        arrays["cgm_slots"][np.flatnonzero(wearer)] += per_day
    utc = cols.utc_seconds[ok]
    both = _max_per_bin(
        np.concatenate([flat, flat + patients * days]),
        np.concatenate([utc, np.where(cgm, utc, -np.inf)]),
        2 * patients * days,
    )
    last = both[: patients * days].reshape(shape)
    last_cgm = both[patients * days :].reshape(shape)
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
