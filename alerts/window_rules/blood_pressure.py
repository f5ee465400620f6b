"""Rules over windows and trends of home blood pressure: W7 against goal, morning and evening, trend."""

from __future__ import annotations

import numpy as np

from alerts.summaries import at_or_above_goal
from alerts.trends import rolling_baseline, rolling_slope, shift_days, upward_shift
from alerts.window_rules.inputs import INFO, WARNING, WindowInputs, WindowResult, status_codes


def bp_ctrl_1(inputs: WindowInputs) -> WindowResult:
    """BP-CTRL-1: W7 mean at or above the patient's goal, systolic or diastolic ([1][6][9][11][12])."""
    return WindowResult(
        "BP-CTRL-1",
        status_codes(inputs.above_goal, inputs.home.sufficient),
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
        status_codes(
            above_goal & home.sufficient & fired_before, home.sufficient & (known_before | ~above_goal)
        ),
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
        status_codes(stage_2, home.sufficient),
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
        status_codes(morning_high & ~evening_high, inputs.morning_evening_known),
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
        status_codes(morning_minus_evening >= params.am_difference_mmhg, inputs.morning_evening_known),
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
        status_codes(shift.ewma_alarm | shift.cusum_alarm, known),
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
