"""Trend mathematics over patients x days (numpy), for BP-TREND-1 and the sweep.

All functions take a 2-D array `daily` of shape (patients, days) with NaN where a patient has no value
on a day, and work on every patient at once.

- EWMA: z_t = lambda x_t + (1 - lambda) z_{t-1}, z_0 = mu0; control limit mu0 + L sigma_z with the
  exact variance sigma_z^2 = sigma^2 lambda/(2-lambda) (1 - (1-lambda)^(2i)) (NIST/SEMATECH §6.3.2.4
  [54], clinical-rules.md §3.1).
- CUSUM: S_hi = max(0, S_hi + x - mu0 - k), alarm when S_hi > h, k = 0.5 sigma, h = 4 sigma
  (FDA DIDSR AIM-CU; Montgomery §16-10 [53]).
- Least-squares slope over N days: no clinical source (DEFAULT, clinical-rules.md §3.1: display /
  secondary signal only, >= 7 daily means).
Days without a value are skipped: the statistics carry over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def rolling_sum(values: FloatArray, window: int) -> FloatArray:
    """out[:, t] = sum(values[:, t-window+1 : t+1]) along axis 1 (fewer days at the start)."""
    if window <= 0:
        raise ValueError("window must be positive")
    csum = np.cumsum(values, axis=1, dtype=np.float64)
    out = csum.copy()
    out[:, window:] = csum[:, window:] - csum[:, :-window]
    return out


def shift_days(values: FloatArray, days: int, fill: float = 0.0) -> FloatArray:
    """out[:, t] = values[:, t - days] (fill before the start)."""
    out = np.full_like(values, fill)
    if days < values.shape[1]:
        out[:, days:] = values[:, : values.shape[1] - days]
    return out


@dataclass(frozen=True, slots=True)
class Baseline:
    mean: FloatArray  # (P, D): baseline mean as of each day
    sigma: FloatArray
    days: FloatArray  # number of baseline days with a value


def rolling_baseline(daily: FloatArray, baseline_days: int, gap_days: int) -> Baseline:
    """Mean and sample SD of the `baseline_days` days that end `gap_days` before each day t."""
    present = ~np.isnan(daily)
    x = np.where(present, daily, 0.0)
    n = shift_days(rolling_sum(present.astype(np.float64), baseline_days), gap_days)
    s = shift_days(rolling_sum(x, baseline_days), gap_days)
    ss = shift_days(rolling_sum(x * x, baseline_days), gap_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        var = (ss - n * mean * mean) / (n - 1.0)
    sigma = np.sqrt(np.clip(var, 0.0, None))
    return Baseline(mean=mean, sigma=sigma, days=n)


@dataclass(frozen=True, slots=True)
class ShiftResult:
    ewma: FloatArray  # (P, D) EWMA at the end of the monitored window ending on day t
    ewma_limit: FloatArray  # its upper control limit
    cusum_hi: FloatArray  # CUSUM S_hi at the end of the window
    cusum_h: FloatArray  # decision interval h
    points: FloatArray  # days with a value inside the monitored window

    @property
    def ewma_alarm(self) -> BoolArray:
        return np.asarray(self.ewma > self.ewma_limit, dtype=np.bool_)

    @property
    def cusum_alarm(self) -> BoolArray:
        return np.asarray(self.cusum_hi > self.cusum_h, dtype=np.bool_)


def upward_shift(
    daily: FloatArray,
    baseline: Baseline,
    window_days: int,
    ewma_lambda: float,
    ewma_l: float,
    cusum_k_sigma: float,
    cusum_h_sigma: float,
) -> ShiftResult:
    """EWMA and upper CUSUM of the last `window_days` days against the patient's own baseline.

    For every evaluation day t, both charts restart at the baseline mean on day t-window+1 and run to
    day t. Vectorised over patients and evaluation days: the loop is over the window's offsets only.
    """
    p, d = daily.shape
    mu0, sigma = baseline.mean, baseline.sigma
    z = mu0.copy()
    s_hi = np.zeros((p, d))
    points = np.zeros((p, d))
    k = cusum_k_sigma * sigma
    lam = ewma_lambda
    for offset in range(window_days - 1, -1, -1):
        # Value on day t - offset for each evaluation day t.
        x = shift_days(daily, offset, fill=np.nan)
        has = ~np.isnan(x)
        xv = np.where(has, x, 0.0)
        z = np.where(has, lam * xv + (1.0 - lam) * z, z)
        s_hi = np.where(has, np.maximum(0.0, s_hi + xv - mu0 - k), s_hi)
        points += has
    var_factor = lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2.0 * points))
    limit = mu0 + ewma_l * sigma * np.sqrt(var_factor)
    return ShiftResult(ewma=z, ewma_limit=limit, cusum_hi=s_hi, cusum_h=cusum_h_sigma * sigma, points=points)


def rolling_slope(daily: FloatArray, window_days: int) -> tuple[FloatArray, FloatArray]:
    """Least-squares slope (units per day) of the daily values in the last `window_days` days, and
    the number of days it rests on. NaN where fewer than 2 days."""
    p, d = daily.shape
    present = ~np.isnan(daily)
    day = np.broadcast_to(np.arange(d, dtype=np.float64), (p, d))
    x = np.where(present, day, 0.0)
    y = np.where(present, daily, 0.0)
    n = rolling_sum(present.astype(np.float64), window_days)
    sx = rolling_sum(x, window_days)
    sy = rolling_sum(y, window_days)
    sxx = rolling_sum(x * x, window_days)
    sxy = rolling_sum(x * y, window_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    slope = np.where(n >= 2, slope, np.nan)
    return slope, n
