"""Rules over windows of fingerstick glucose: fasting and post-meal control, recurrent hypoglycaemia."""

from __future__ import annotations

import numpy as np

from alerts.profiles import THRESHOLD_EPSILON
from alerts.trends import rolling_sum, shift_days
from alerts.window_rules.inputs import INFO, WARNING, WindowInputs, WindowResult, status_codes


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
        status_codes(above, known),
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
        status_codes(
            postprandial_mean >= limit - THRESHOLD_EPSILON, postprandial_values >= params.glu_min_values
        ),
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
        status_codes((level_1 >= params.hypo_rec_l1_count) | (level_2 >= 1), glucose_seen),
        inputs.severity(WARNING),
        {"level1_in_7_days": level_1, "level2_in_14_days": level_2},
        params.hypo_rec_l2_days,
    )
