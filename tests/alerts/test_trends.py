"""Trend mathematics against hand-computed values (NIST/SEMATECH §6.3.2.4 [54]; AIM-CU CUSUM [53])."""

from __future__ import annotations

import math

import numpy as np

from alerts.trends import Baseline, rolling_baseline, rolling_slope, rolling_sum, upward_shift


def test_rolling_sum() -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert rolling_sum(x, 2).tolist() == [[1.0, 3.0, 5.0, 7.0]]


def test_ewma_and_cusum_by_hand() -> None:
    # mu0 = 100, sigma = 2: lambda 0.2 -> z1 = 0.2*104 + 0.8*100 = 100.8; z2 = 0.2*104 + 0.8*100.8 = 101.44.
    # CUSUM k = 0.5 sigma = 1: S1 = 104-100-1 = 3, S2 = 6. h = 4 sigma = 8: no alarm yet.
    daily = np.array([[104.0, 104.0]])
    base = Baseline(mean=np.full((1, 2), 100.0), sigma=np.full((1, 2), 2.0), days=np.full((1, 2), 28.0))
    res = upward_shift(
        daily, base, window_days=2, ewma_lambda=0.2, ewma_l=3.0, cusum_k_sigma=0.5, cusum_h_sigma=4.0
    )
    assert math.isclose(res.ewma[0, 1], 101.44)
    assert math.isclose(res.cusum_hi[0, 1], 6.0)
    # exact EWMA limit after 2 points: 100 + 3*2*sqrt(0.2/1.8*(1-0.8**4)) = 101.5492...
    assert math.isclose(res.ewma_limit[0, 1], 100 + 6 * math.sqrt(0.2 / 1.8 * (1 - 0.8**4)))
    assert not res.ewma_alarm[0, 1] and not res.cusum_alarm[0, 1]
    three = upward_shift(
        np.array([[104.0, 104.0, 104.0]]),
        Baseline(np.full((1, 3), 100.0), np.full((1, 3), 2.0), np.full((1, 3), 28.0)),
        3,
        0.2,
        3.0,
        0.5,
        4.0,
    )
    assert math.isclose(three.cusum_hi[0, 2], 9.0) and three.cusum_alarm[0, 2]  # 9 > 8


def test_days_without_value_are_skipped() -> None:
    daily = np.array([[104.0, np.nan, 104.0]])
    base = Baseline(np.full((1, 3), 100.0), np.full((1, 3), 2.0), np.full((1, 3), 28.0))
    res = upward_shift(daily, base, 3, 0.2, 3.0, 0.5, 4.0)
    assert math.isclose(res.ewma[0, 2], 101.44) and res.points[0, 2] == 2


def test_baseline_excludes_the_monitored_window() -> None:
    daily = np.array([[10.0, 12.0, 14.0, 99.0]])
    base = rolling_baseline(daily, baseline_days=3, gap_days=1)
    assert math.isclose(base.mean[0, 3], 12.0) and math.isclose(base.sigma[0, 3], 2.0)


def test_least_squares_slope() -> None:
    daily = np.array([[1.0, 3.0, np.nan, 7.0]])  # y = 1 + 2x
    slope, n = rolling_slope(daily, 4)
    assert math.isclose(slope[0, 3], 2.0) and n[0, 3] == 3
