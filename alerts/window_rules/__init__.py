"""Rules over windows and trends, vectorised over patients x days (numpy).

Each rule is one function, registered by its rule id in `WINDOW_RULES` below: home blood pressure in
`blood_pressure`, fingerstick glucose in `glucose`, CGM metrics in `cgm`, DQ-01 and DQ-03 in
`data_quality`; what they judge and give back is in `inputs`. A rule yields, for
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

from collections.abc import Callable

import numpy as np

from alerts.daily_matrix import DailyMatrix
from alerts.profiles import RuleParameters
from alerts.window_rules.blood_pressure import bp_am_1, bp_am_2, bp_ctrl_1, bp_ctrl_2, bp_ctrl_3, bp_trend_1
from alerts.window_rules.cgm import cgm_cv, cgm_gmi, cgm_gri, cgm_suff, cgm_tar, cgm_tbr, cgm_tir
from alerts.window_rules.data_quality import dq_01, dq_03
from alerts.window_rules.glucose import glu_ctrl_1, glu_ctrl_2, glu_hypo_rec
from alerts.window_rules.inputs import (
    CLEAR,
    FIRING,
    SEVERITY_OF_RANK,
    UNKNOWN,
    PatientArrays,
    WindowInputs,
    WindowResult,
)

__all__ = [
    "CLEAR",
    "FIRING",
    "SEVERITY_OF_RANK",
    "UNKNOWN",
    "WINDOW_RULES",
    "PatientArrays",
    "WindowResult",
    "evaluate_windows",
]

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
