"""A small numpy generator of plausible home-monitoring histories (for benches, examples, tests).

Not a physiological model: enough variety to exercise every rule and to make alert burden visible
(clinical-rules.md §8: validate alerts/patient/month on populations). Each patient gets a usual BP,
within-day noise, morning and evening duplicate readings with some missed sessions (adherence: ~73 %
sent >= 6 readings/week in Margolis 2013 [55]), a few cuff flags, some an upward BP shift, some atrial
fibrillation flags, and for people with diabetes fasting / post-prandial fingersticks with occasional
lows and highs; a few wear a CGM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from alerts.daily_matrix import KIND_CODES, MEAL_CODES, SECONDS_PER_DAY
from alerts.model import Observation, ObservationKind
from vitals.readings import Meal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_MEAL_BY_CODE = {code: meal for meal, code in MEAL_CODES.items()}
CGM_INTERVAL_S = 15 * 60


@dataclass(frozen=True, slots=True)
class SimulatedReadings:
    patient_ids: list[str]
    start: datetime  # UTC midnight of day 0; patients' local time = UTC + utc_offset_h
    days: int
    utc_offset_h: float
    patient: IntArray
    utc_seconds: FloatArray  # seconds since `start`
    kind: npt.NDArray[np.int8]
    systolic_mmhg: FloatArray
    diastolic_mmhg: FloatArray
    pulse_bpm: FloatArray
    glucose_mg_dl: FloatArray
    meal: npt.NDArray[np.int8]
    excluded_from_averages: BoolArray
    irregular_pulse: BoolArray

    def __len__(self) -> int:
        return int(self.patient.shape[0])

    def observations(self) -> list[Observation]:
        out: list[Observation] = []
        kinds = {code: kind for kind, code in KIND_CODES.items()}
        for i in range(len(self)):
            pid = self.patient_ids[int(self.patient[i])]
            at = self.start + timedelta(seconds=float(self.utc_seconds[i]))
            kind = kinds[int(self.kind[i])]
            rid = hashlib.sha256(f"{pid}|{i}".encode()).hexdigest()[:32]
            excl = bool(self.excluded_from_averages[i])
            if kind is ObservationKind.BLOOD_PRESSURE:
                out.append(
                    Observation(
                        patient_id=pid,
                        reading_id=rid,
                        measured_at=at,
                        kind=kind,
                        systolic_mmhg=float(self.systolic_mmhg[i]),
                        diastolic_mmhg=float(self.diastolic_mmhg[i]),
                        pulse_bpm=float(self.pulse_bpm[i]),
                        irregular_pulse=bool(self.irregular_pulse[i]),
                        excluded_from_averages=excl,
                        exclusion_reasons=("measurement_status: body_movement",) if excl else (),
                    )
                )
            else:
                meal: Meal | None = _MEAL_BY_CODE.get(int(self.meal[i]))
                out.append(
                    Observation(
                        patient_id=pid,
                        reading_id=rid,
                        measured_at=at,
                        kind=kind,
                        glucose_mg_dl=float(self.glucose_mg_dl[i]),
                        meal=meal,
                    )
                )
        return out


def simulate(
    patients: int, days: int, seed: int = 7, *, cgm_fraction: float = 0.05, start: datetime | None = None
) -> SimulatedReadings:
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    offset_h = 8.0  # local = UTC+8 (Asia/Shanghai has no DST)
    ids = [f"p{idx:06d}" for idx in range(patients)]
    usual_sbp = rng.normal(134.0, 13.0, patients)
    usual_dbp = 0.55 * usual_sbp + rng.normal(8.0, 6.0, patients)
    usual_pulse = rng.normal(72.0, 10.0, patients)
    adherence = rng.uniform(0.45, 0.98, patients)
    shift_day = np.where(rng.random(patients) < 0.10, rng.integers(30, max(31, days), patients), days + 1)
    atrial_fibrillation = rng.random(patients) < 0.03
    diabetic = rng.random(patients) < 0.45
    usual_fasting = rng.normal(128.0, 22.0, patients)
    cgm_user = diabetic & (rng.random(patients) < cgm_fraction / 0.45)

    # --- blood pressure: sessions (patient, day, slot) with 2 readings each ------------------------------
    grid = np.meshgrid(np.arange(patients), np.arange(days), np.arange(2), indexing="ij")
    p_idx, d_idx, slot = grid[0].ravel(), grid[1].ravel(), grid[2].ravel()
    taken = rng.random(p_idx.shape[0]) < adherence[p_idx]
    p_idx, d_idx, slot = p_idx[taken], d_idx[taken], slot[taken]
    local_hour = np.where(
        slot == 0, rng.normal(7.2, 0.6, p_idx.shape[0]), rng.normal(20.0, 0.8, p_idx.shape[0])
    )
    session_s = (d_idx * 24.0 + np.clip(local_hour, 4.5, 23.5) - offset_h) * 3600.0
    session_level = (
        usual_sbp[p_idx]
        + rng.normal(0, 7.0, p_idx.shape[0])
        + np.where(slot == 0, 4.0, -2.0)
        + np.where(d_idx >= shift_day[p_idx], 16.0, 0.0)
    )
    # two readings 1-2 min apart
    p2 = np.repeat(p_idx, 2)
    t2 = np.repeat(session_s, 2) + np.tile([0.0, 90.0], p_idx.shape[0])
    level2 = np.repeat(session_level, 2)
    n_bp = p2.shape[0]
    sbp = level2 + rng.normal(0, 4.0, n_bp)
    dbp = usual_dbp[p2] + 0.45 * (sbp - usual_sbp[p2]) + rng.normal(0, 3.0, n_bp)
    pulse = usual_pulse[p2] + rng.normal(0, 5.0, n_bp)
    movement = rng.random(n_bp) < 0.03
    irregular = np.where(atrial_fibrillation[p2], rng.random(n_bp) < 0.5, rng.random(n_bp) < 0.004)

    # --- glucose fingersticks: fasting daily, post-prandial some days ----------------------------------
    ggrid = np.meshgrid(np.arange(patients), np.arange(days), indexing="ij")
    g_p, g_d = ggrid[0].ravel(), ggrid[1].ravel()
    keep = diabetic[g_p] & ~cgm_user[g_p] & (rng.random(g_p.shape[0]) < adherence[g_p] * 0.8)
    g_p, g_d = g_p[keep], g_d[keep]
    post = rng.random(g_p.shape[0]) < 0.35
    g_hour = np.where(post, rng.normal(14.0, 1.5, g_p.shape[0]), rng.normal(6.8, 0.5, g_p.shape[0]))
    g_t = (g_d * 24.0 + np.clip(g_hour, 4.5, 23.5) - offset_h) * 3600.0
    glucose = usual_fasting[g_p] + np.where(post, 45.0, 0.0) + rng.normal(0, 22.0, g_p.shape[0])
    low_event = rng.random(g_p.shape[0]) < 0.01
    glucose = np.where(low_event, rng.uniform(42.0, 69.0, g_p.shape[0]), glucose)
    glucose = np.clip(glucose, 35.0, 560.0)
    g_meal = np.where(post, MEAL_CODES[Meal.POSTPRANDIAL], MEAL_CODES[Meal.FASTING]).astype(np.int8)

    # --- CGM every 15 min ---------------------------------------------------------------------------------
    cgm_patients = np.flatnonzero(cgm_user)
    per_day = SECONDS_PER_DAY // CGM_INTERVAL_S
    steps = days * per_day
    # Sensor glucose is smooth: AR(1) noise per patient (phi 0.97 per 15 min, stationary SD 28 mg/dL).
    phi, sd = 0.97, 28.0
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi * phi), (steps, cgm_patients.shape[0]))
    noise = np.empty_like(shocks)
    level = rng.normal(0.0, sd, cgm_patients.shape[0])
    for step in range(steps):
        level = phi * level + shocks[step]
        noise[step] = level
    c_p = np.repeat(cgm_patients, steps)
    c_t = np.tile(np.arange(steps, dtype=np.float64) * CGM_INTERVAL_S, cgm_patients.shape[0])
    c_noise = noise.T.ravel()
    # Sensor wear: 90 % of slots (short gaps); the gaps are where the readings are dropped.
    wear = rng.random(c_p.shape[0]) < 0.9
    c_p, c_t, c_noise = c_p[wear], c_t[wear], c_noise[wear]
    c_hour = ((c_t / 3600.0) + offset_h) % 24.0
    c_glu = usual_fasting[c_p] + 30.0 * np.sin((c_hour - 8.0) / 24.0 * 2 * np.pi) + c_noise
    c_glu = np.clip(c_glu, 40.0, 400.0)

    n_g, n_c = g_p.shape[0], c_p.shape[0]
    nan_g, nan_c = np.full(n_g, np.nan), np.full(n_c, np.nan)
    return SimulatedReadings(
        patient_ids=ids,
        start=start,
        days=days,
        utc_offset_h=offset_h,
        patient=np.concatenate([p2, g_p, c_p]).astype(np.int64),
        utc_seconds=np.concatenate([t2, g_t, c_t]),
        kind=np.concatenate(
            [
                np.full(n_bp, KIND_CODES[ObservationKind.BLOOD_PRESSURE]),
                np.full(n_g, KIND_CODES[ObservationKind.GLUCOSE]),
                np.full(n_c, KIND_CODES[ObservationKind.CGM]),
            ]
        ).astype(np.int8),
        systolic_mmhg=np.concatenate([np.round(sbp), nan_g, nan_c]),
        diastolic_mmhg=np.concatenate([np.round(dbp), nan_g, nan_c]),
        pulse_bpm=np.concatenate([np.round(pulse), nan_g, nan_c]),
        glucose_mg_dl=np.concatenate([np.full(n_bp, np.nan), np.round(glucose), np.round(c_glu)]),
        meal=np.concatenate([np.zeros(n_bp, np.int8), g_meal, np.zeros(n_c, np.int8)]).astype(np.int8),
        excluded_from_averages=np.concatenate([movement, np.zeros(n_g + n_c, np.bool_)]),
        irregular_pulse=np.concatenate([irregular, np.zeros(n_g + n_c, np.bool_)]),
    )
