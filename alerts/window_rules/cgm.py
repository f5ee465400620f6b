"""Rules over 14 days of CGM data (Battelino 2019 [32][33]): sufficiency, time in ranges, variability,
GRI and GMI."""

from __future__ import annotations

import numpy as np

from alerts.profiles import THRESHOLD_EPSILON
from alerts.summaries import coefficient_of_variation_percent, gmi_percent
from alerts.trends import rolling_sum, shift_days
from alerts.window_rules.inputs import INFO, WARNING, WindowInputs, WindowResult, status_codes

# Glycemia Risk Index weights of very low, low, very high and high time (Klonoff 2023 [36]).
GRI_VERY_LOW_WEIGHT, GRI_LOW_WEIGHT, GRI_VERY_HIGH_WEIGHT, GRI_HIGH_WEIGHT = 3.0, 2.4, 1.6, 0.8
GRI_ZONE_D = 60.0  # zones D/E are GRI > 60 ([36])
CGM_CV_LIMIT_PERCENT = 36.0  # %CV > 36 is unstable glucose ([32][34])


def cgm_suff(inputs: WindowInputs) -> WindowResult:
    """CGM-SUFF: CGM data present, but < 70 % of the 15-minute slots of 14 days covered ([32][33]);
    the other CGM-* rules are then unknown."""
    cgm, days = inputs.cgm, inputs.params.cgm_days
    return WindowResult(
        "CGM-SUFF",
        status_codes(~cgm.sufficient, cgm.cgm_user),
        inputs.severity(INFO),
        {"cgm_wear_fraction": cgm.wear_fraction, "cgm_days": np.full(inputs.shape, float(days))},
        days,
    )


def cgm_tbr(inputs: WindowInputs) -> WindowResult:
    """CGM-TBR: time below 54 >= 1 %, or below 70 >= 4 % (older adults: >= 1 %) ([33])."""
    cgm = inputs.cgm
    return WindowResult(
        "CGM-TBR",
        status_codes(cgm.below_range_breach, cgm.sufficient),
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
        status_codes(above_250 | above_180, cgm.sufficient),
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
        status_codes(cgm.in_range_percent < goal, cgm.sufficient),
        inputs.severity(INFO),
        dict(cgm.shown, tir_percent=cgm.in_range_percent),
        inputs.params.cgm_days,
    )


def cgm_cv(inputs: WindowInputs) -> WindowResult:
    """CGM-CV: %CV > 36; a warning together with a CGM-TBR breach ([32][34])."""
    matrix, cgm, days = inputs.matrix, inputs.cgm, inputs.params.cgm_days
    cv = coefficient_of_variation_percent(
        cgm.readings, inputs.cgm_sum_mg_dl, rolling_sum(matrix["cgm_sumsq"], days)
    )
    return WindowResult(
        "CGM-CV",
        status_codes(cv > CGM_CV_LIMIT_PERCENT, cgm.sufficient),
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
        status_codes(gri > GRI_ZONE_D, cgm.sufficient),
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
        status_codes(rise >= params.gmi_rise_points - THRESHOLD_EPSILON, cgm.sufficient & sufficient_before),
        inputs.severity(INFO),
        {"gmi_percent": gmi, "previous_gmi_percent": previous_gmi, "gmi_rise_points": rise},
        2 * days,
    )
