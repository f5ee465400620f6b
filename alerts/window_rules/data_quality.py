"""Data-quality rules over time: stale data (DQ-01) and days with data (DQ-03)."""

from __future__ import annotations

import numpy as np

from alerts.daily_matrix import SECONDS_PER_DAY
from alerts.summaries import days_with_data
from alerts.window_rules.inputs import INFO, WARNING, WindowInputs, WindowResult, status_codes


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
        status_codes(stale, seen),
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
        status_codes(data_days < params.sufficiency_min_days, days_since_first >= params.sufficiency_days),
        inputs.severity(INFO),
        {"data_days_in_30": data_days},
        params.sufficiency_days,
    )
