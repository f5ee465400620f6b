"""Home-BP average (W7), morning/evening, trend and glucose-control rules at their thresholds."""

from __future__ import annotations

from datetime import datetime

import pytest

from alerts.model import Observation, OutcomeStatus, ReportKind
from alerts.profiles import PatientTargets
from tests.alerts.helpers import at, bp, evaluate, fires, glu, glu_mmol, report, status, twice_daily
from vitals.payload import AlertSeverity
from vitals.readings import Meal

DAYS_1_TO_7 = range(7)  # day index 0 = the discarded day 1


def _end_of(day: int) -> datetime:
    return at(day, 23, 59)


# BP-CTRL-1: W7 mean >= {EU/CN: 135/85 | US: 130/80} [1][6][9][11][12]; W7 = 7 days, day 1 discarded,
# >= 12 valid readings (§7 conventions, §1.3).
@pytest.mark.parametrize(
    ("profile_name", "systolic", "diastolic", "expected"),
    [
        ("eu", 135, 70, True),
        ("eu", 134, 84, False),
        ("cn", 120, 85, True),
        ("cn", 134, 84, False),
        ("us", 130, 70, True),
        ("us", 129, 79, False),
    ],
)
def test_home_average_not_at_goal(
    profile_name: str, systolic: float, diastolic: float, expected: bool
) -> None:
    out = evaluate(twice_daily(DAYS_1_TO_7, systolic, diastolic), _end_of(6), profile_name=profile_name)
    assert fires(out, "BP-CTRL-1") is expected
    assert status(out, "BP-CTRL-1") is not OutcomeStatus.UNKNOWN


def test_doctor_target_overrides_profile_goal() -> None:
    # "goal overrides per patient (e.g. 130/80 DM/CKD)" [11].
    readings = twice_daily(DAYS_1_TO_7, 132, 78)
    assert not fires(evaluate(readings, _end_of(6), profile_name="eu"), "BP-CTRL-1")
    targets = PatientTargets(goal_systolic_mmhg=130, goal_diastolic_mmhg=80, timezone="UTC")
    assert fires(evaluate(readings, _end_of(6), profile_name="eu", targets=targets), "BP-CTRL-1")


def test_day_one_is_discarded() -> None:
    # Day 1 very high, days 2-7 at 130/80: the protocol average ignores day 1 [7][9][14].
    readings = twice_daily([0], 190, 110) + twice_daily(range(1, 7), 130, 80)
    out = evaluate(readings, _end_of(6), profile_name="eu")
    assert out["BP-CTRL-1"].values["w7_systolic_mmhg"] == 130.0
    assert out["BP-CTRL-1"].values["w7_readings"] == 24
    assert not fires(out, "BP-CTRL-1")


def test_fewer_than_12_valid_readings_is_insufficient() -> None:
    # W7: >= 12 valid readings, else insufficient (§7). Days 2-4 x 4 = 12 fires; 11 is unknown.
    twelve = twice_daily(range(4), 150, 95)  # day 0 discarded, 3 days x 4 = 12
    assert fires(evaluate(twelve, _end_of(3)), "BP-CTRL-1")
    eleven = twelve[:-1]
    assert status(evaluate(eleven, _end_of(3)), "BP-CTRL-1") is OutcomeStatus.UNKNOWN


def test_flagged_readings_are_excluded_from_the_average() -> None:
    # DQ-02: readings with movement/cuff/position flags are excluded from averages [27][61].
    base = twice_daily(DAYS_1_TO_7, 130, 80)
    flagged = [bp(at(d, 7, 30), 220, 130, excluded=True) for d in range(1, 7)]
    out = evaluate(base + flagged, _end_of(6))
    assert out["BP-CTRL-1"].values["w7_systolic_mmhg"] == 130.0
    # ...and so are NaN readings; with only flagged readings the window is insufficient.
    only_flagged = evaluate(
        [bp(at(d, 7, m), 200, 120, excluded=True) for d in range(7) for m in (0, 2, 4)], _end_of(6)
    )
    assert status(only_flagged, "BP-CTRL-1") is OutcomeStatus.UNKNOWN


def test_persistently_uncontrolled_needs_two_consecutive_windows() -> None:
    # BP-CTRL-2: CTRL-1 true in 2 consecutive review windows [17].
    one_window = evaluate(twice_daily(range(7), 140, 88), _end_of(6))
    assert not fires(one_window, "BP-CTRL-2")
    two = evaluate(twice_daily(range(14), 140, 88), _end_of(13))
    assert fires(two, "BP-CTRL-2")
    recovered = evaluate(twice_daily(range(7), 140, 88) + twice_daily(range(7, 14), 125, 75), _end_of(13))
    assert not fires(recovered, "BP-CTRL-2")


@pytest.mark.parametrize(
    ("profile_name", "systolic", "diastolic", "expected"),
    [
        ("us", 145, 70, True),  # ACC/AHA 145/90 [1]
        ("us", 144, 89, False),
        ("eu", 150, 70, True),  # NICE 150/95 [9]
        ("eu", 149, 94, False),
        ("eu", 120, 95, True),
    ],
)
def test_stage_2_equivalent_home_average(
    profile_name: str, systolic: float, diastolic: float, expected: bool
) -> None:
    out = evaluate(twice_daily(DAYS_1_TO_7, systolic, diastolic), _end_of(6), profile_name=profile_name)
    assert fires(out, "BP-CTRL-3") is expected


def _am_pm(morning: tuple[float, float], evening: tuple[float, float]) -> list[Observation]:
    out = []
    for d in range(7):
        for k in range(2):
            out.append(bp(at(d, 7, 2 * k), *morning))
            out.append(bp(at(d, 20, 2 * k), *evening))
    return out


def test_morning_hypertension_with_normal_evenings() -> None:
    # BP-AM-1: morning W7 mean >= 135/85 while evening < 135/85 [20][13].
    assert fires(evaluate(_am_pm((135, 80), (125, 78)), _end_of(6)), "BP-AM-1")
    assert not fires(evaluate(_am_pm((134, 84), (125, 78)), _end_of(6)), "BP-AM-1")
    assert not fires(evaluate(_am_pm((140, 80), (135, 78)), _end_of(6)), "BP-AM-1")


def test_morning_evening_difference_of_20() -> None:
    # BP-AM-2: mean(morning SBP) - mean(evening SBP) >= 20 [21].
    assert fires(evaluate(_am_pm((140, 80), (120, 78)), _end_of(6)), "BP-AM-2")
    assert not fires(evaluate(_am_pm((139, 80), (120, 78)), _end_of(6)), "BP-AM-2")


def _daily(values: list[float]) -> list[Observation]:
    return [bp(at(d, 8), v, 80) for d, v in enumerate(values)]


def test_upward_shift_detected_against_own_baseline() -> None:
    # BP-TREND-1: EWMA lambda 0.2 L 3 / CUSUM k 0.5 sigma h 4 sigma vs 28-day baseline [52][53][54].
    baseline = [126.0 + (2.0 if d % 2 else -2.0) for d in range(28)]  # mean 126, sd ~2
    stable = evaluate(_daily(baseline + [126.0, 124.0] * 7), at(41, 12))
    assert status(stable, "BP-TREND-1") is OutcomeStatus.CLEAR
    shifted = evaluate(_daily(baseline + [131.0] * 14), at(41, 12))
    assert fires(shifted, "BP-TREND-1")
    assert shifted["BP-TREND-1"].severity is AlertSeverity.INFO
    assert shifted["BP-TREND-1"].values["slope_mmhg_per_day"] is not None


def test_trend_needs_ten_baseline_days() -> None:
    # "require >= 10 baseline days" (§7 BP-TREND-1).
    nine = [126.0 + (2.0 if d % 2 else -2.0) for d in range(9)]
    out = evaluate(_daily([*nine, *[140.0] * 14]), at(22, 12))
    assert status(out, "BP-TREND-1") is OutcomeStatus.UNKNOWN


def test_overtreatment_after_medication_change() -> None:
    # BP-LOW-2: W7 SBP fall >= 20 mmHg vs the W7 before a medication change [9][29] (DEFAULT compare).
    before = twice_daily(range(7), 150, 85)
    change = report(at(7, 9), ReportKind.MEDICATION_CHANGE)
    after20 = twice_daily(range(8, 15), 130, 80)
    after19 = twice_daily(range(8, 15), 131, 80)
    assert fires(evaluate([*before, change, *after20], _end_of(14)), "BP-LOW-2")
    assert not fires(evaluate([*before, change, *after19], _end_of(14)), "BP-LOW-2")


# GLU-CTRL-1: 7-day mean fasting >= 7.0 mmol/L (126 mg/dL) with >= 3 fasting values [41][18];
# US: ADA pre-prandial 80-130 mg/dL, not at target above 130 [31].
def test_fasting_mean_at_7_mmol_fires_in_cn_and_needs_three_values() -> None:
    three = [glu_mmol(at(d, 6, 30), 7.0, Meal.FASTING) for d in range(3)]
    assert fires(evaluate(three, profile_name="cn"), "GLU-CTRL-1")
    below = [glu_mmol(at(d, 6, 30), 6.9, Meal.FASTING) for d in range(3)]
    assert not fires(evaluate(below, profile_name="cn"), "GLU-CTRL-1")
    two = three[:2]
    assert status(evaluate(two, profile_name="cn"), "GLU-CTRL-1") is OutcomeStatus.UNKNOWN
    # post-prandial values do not count as fasting
    pp = [glu_mmol(at(d, 13), 9.0, Meal.POSTPRANDIAL) for d in range(3)]
    assert status(evaluate(pp, profile_name="cn"), "GLU-CTRL-1") is OutcomeStatus.UNKNOWN


def test_fasting_limit_in_us_profile_is_above_130() -> None:
    at130 = [glu(at(d, 6, 30), 130, Meal.FASTING) for d in range(3)]
    assert not fires(evaluate(at130, profile_name="us"), "GLU-CTRL-1")
    at131 = [glu(at(d, 6, 30), 131, Meal.FASTING) for d in range(3)]
    assert fires(evaluate(at131, profile_name="us"), "GLU-CTRL-1")


def test_postprandial_mean_at_10_mmol() -> None:
    # GLU-CTRL-2: 7-day mean 2-h PP >= 10.0 mmol/L (180 mg/dL) [31][41].
    assert fires(evaluate([glu(at(d, 13), 180, Meal.POSTPRANDIAL) for d in range(3)]), "GLU-CTRL-2")
    assert not fires(evaluate([glu(at(d, 13), 179, Meal.POSTPRANDIAL) for d in range(3)]), "GLU-CTRL-2")
    assert fires(
        evaluate([glu_mmol(at(d, 13), 10.0, Meal.POSTPRANDIAL) for d in range(3)], profile_name="cn"),
        "GLU-CTRL-2",
    )
