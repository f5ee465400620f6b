"""Glucose, CGM and data-quality rules at their thresholds (clinical-rules.md §7)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from alerts.model import Observation, OutcomeStatus, ReportKind
from alerts.profiles import PatientTargets
from tests.alerts.helpers import at, bp, cgm, evaluate, fires, glu, glu_mmol, report, status
from vitals.payload import AlertSeverity
from vitals.readings import Meal


# GLU-HYPO-1: Level 1 54-69 mg/dL [30]; CN: <= 3.9 mmol/L -> urgent [18].
@pytest.mark.parametrize(
    ("profile_name", "mg_dl", "expected", "severity"),
    [
        ("us", 69, True, AlertSeverity.WARNING),
        ("us", 70, False, None),
        ("us", 54, True, AlertSeverity.WARNING),  # 54 is Level 1, not Level 2
        ("cn", 70, True, AlertSeverity.URGENT),  # 70 mg/dL = 3.89 mmol/L <= 3.9
        ("cn", 71, False, None),  # 3.94 mmol/L
    ],
)
def test_level_1_hypoglycaemia(
    profile_name: str, mg_dl: float, expected: bool, severity: AlertSeverity | None
) -> None:
    out = evaluate([glu(at(0, 7), mg_dl)], profile_name=profile_name)
    assert fires(out, "GLU-HYPO-1") is expected
    assert out["GLU-HYPO-1"].severity is severity


def test_cn_threshold_is_inclusive_of_a_meter_showing_3_9_mmol() -> None:
    assert fires(evaluate([glu_mmol(at(0, 7), 3.9)], profile_name="cn"), "GLU-HYPO-1")
    assert not fires(evaluate([glu_mmol(at(0, 7), 4.0)], profile_name="cn"), "GLU-HYPO-1")


def test_level_2_hypoglycaemia_is_urgent() -> None:
    # GLU-HYPO-2: < 54 mg/dL (< 3.0 mmol/L) urgent [30][32].
    out = evaluate([glu(at(0, 7), 53)])
    assert fires(out, "GLU-HYPO-2")
    assert out["GLU-HYPO-2"].severity is AlertSeverity.URGENT
    assert not fires(evaluate([glu(at(0, 7), 54)]), "GLU-HYPO-2")
    assert not fires(evaluate([glu(at(0, 7), 40, excluded=True)]), "GLU-HYPO-2")  # invalid strip


def test_hypo_clears_after_two_readings_back_above_70() -> None:
    # ESC-1: back in range for 2 consecutive readings [58].
    out = evaluate([glu(at(0, 7), 50), glu(at(0, 7, 15), 75), glu(at(0, 8), 90)])
    assert status(out, "GLU-HYPO-2") is OutcomeStatus.CLEAR
    still = evaluate([glu(at(0, 7), 50), glu(at(0, 7, 15), 62), glu(at(0, 8), 90)])
    assert fires(still, "GLU-HYPO-2")


def test_reported_severe_hypo_event_is_level_3() -> None:
    # GLU-HYPO-3: event report (assisted), irrespective of glucose [30].
    out = evaluate([glu(at(0, 7), 110), report(at(0, 9), ReportKind.SEVERE_HYPO_EVENT)])
    assert fires(out, "GLU-HYPO-3")
    assert out["GLU-HYPO-3"].severity is AlertSeverity.URGENT


def test_recurrent_hypos() -> None:
    # GLU-HYPO-REC: >= 2 Level-1 in 7 days or any Level-2 in 14 days ([30] DEFAULT counts).
    two_in_7 = [glu(at(0, 7), 65), glu(at(0, 12), 100), glu(at(6, 7), 66), glu(at(6, 12), 100)]
    assert fires(evaluate(two_in_7, at(6, 23)), "GLU-HYPO-REC")
    apart = [glu(at(0, 7), 65), glu(at(0, 12), 100), glu(at(7, 7), 66), glu(at(7, 12), 100)]
    assert not fires(evaluate(apart, at(7, 23)), "GLU-HYPO-REC")
    level2 = [glu(at(0, 7), 50), glu(at(13, 7), 100)]
    assert fires(evaluate(level2, at(13, 23)), "GLU-HYPO-REC")
    assert not fires(evaluate([glu(at(0, 7), 50), glu(at(14, 7), 100)], at(14, 23)), "GLU-HYPO-REC")


def test_level_2_hyperglycaemia_on_two_consecutive_readings() -> None:
    # GLU-HIGH-1: > 250 mg/dL (> 13.9 mmol/L) on 2 consecutive readings; ketone check [32][40].
    out = evaluate([glu(at(0, 7), 251), glu(at(0, 9), 251)])
    assert fires(out, "GLU-HIGH-1")
    assert out["GLU-HIGH-1"].values["advice"] == "check ketones"
    assert not fires(evaluate([glu(at(0, 7), 250), glu(at(0, 9), 251)]), "GLU-HIGH-1")
    assert not fires(evaluate([glu(at(0, 7), 251), glu(at(0, 8), 180), glu(at(0, 9), 251)]), "GLU-HIGH-1")


def test_very_high_glucose_is_urgent_once_confirmed() -> None:
    # GLU-HIGH-2: >= 300 mg/dL (>= 16.7 mmol/L), confirmed -> urgent [18][40].
    single = evaluate([glu(at(0, 7), 300)])
    assert fires(single, "GLU-HIGH-2")
    assert single["GLU-HIGH-2"].severity is AlertSeverity.WARNING
    confirmed = evaluate([glu(at(0, 7), 300), glu(at(0, 8), 310)])
    assert confirmed["GLU-HIGH-2"].severity is AlertSeverity.URGENT
    assert not fires(evaluate([glu(at(0, 7), 299)]), "GLU-HIGH-2")
    assert fires(evaluate([glu_mmol(at(0, 7), 16.7)], profile_name="cn"), "GLU-HIGH-2")


def test_hhs_range_or_ketones_with_200() -> None:
    # GLU-HIGH-3: >= 600 mg/dL, or ketones (BHB >= 3.0) / symptoms with >= 200 [39].
    assert fires(evaluate([glu(at(0, 7), 600)]), "GLU-HIGH-3")
    assert not fires(evaluate([glu(at(0, 7), 599)]), "GLU-HIGH-3")
    ketones = report(at(0, 7, 30), ReportKind.KETONES, ketones_mmol_l=3.0)
    assert fires(evaluate([glu(at(0, 7), 200), ketones]), "GLU-HIGH-3")
    assert not fires(evaluate([glu(at(0, 7), 199), ketones]), "GLU-HIGH-3")
    low_ketones = report(at(0, 7, 30), ReportKind.KETONES, ketones_mmol_l=2.9)
    assert not fires(evaluate([glu(at(0, 7), 250), low_ketones]), "GLU-HIGH-3")


SlotValue = Callable[[int, int], float]


# --- CGM: >= 14 days and >= 70 % wear, else insufficient and CGM-* suppressed [32][33] -----------------
def _cgm_days(values_for_slot: SlotValue, days: int = 14, wear: float = 1.0) -> list[Observation]:
    out = []
    per_day = 96
    keep = int(per_day * wear)
    for d in range(days):
        for s in range(keep):
            out.append(cgm(at(d, 0, 15 * s), values_for_slot(d, s)))
    return out


def _mix(low54: int = 0, low70: int = 0, high180: int = 0, high250: int = 0) -> SlotValue:
    """Per day of 96 slots: this many slots <54, 54-69, 181-250, >250; the rest 120 mg/dL."""

    def value(_day: int, slot: int) -> float:
        edges = [(low54, 50.0), (low70, 65.0), (high180, 200.0), (high250, 260.0)]
        start = 0
        for count, v in edges:
            if start <= slot < start + count:
                return v
            start += count
        return 120.0

    return value


def test_cgm_insufficient_wear_suppresses_metrics() -> None:
    # CGM-SUFF: 14 days with >= 70 % wear [32][33]; 69 % is insufficient.
    sixty_nine = _cgm_days(_mix(low54=10), wear=0.69)
    out = evaluate(sixty_nine, at(13, 23, 59))
    assert fires(out, "CGM-SUFF")
    assert status(out, "CGM-TBR") is OutcomeStatus.UNKNOWN
    seventy = _cgm_days(_mix(), wear=0.71)
    assert status(evaluate(seventy, at(13, 23, 59)), "CGM-SUFF") is OutcomeStatus.CLEAR


def test_time_below_range() -> None:
    # CGM-TBR: TBR<54 >= 1 % or TBR<70 >= 4 % [33]. 1 slot of 96 = 1.04 %, 4 slots = 4.17 %.
    assert fires(evaluate(_cgm_days(_mix(low54=1)), at(13, 23, 59)), "CGM-TBR")
    assert fires(evaluate(_cgm_days(_mix(low70=4)), at(13, 23, 59)), "CGM-TBR")
    assert not fires(evaluate(_cgm_days(_mix(low70=3)), at(13, 23, 59)), "CGM-TBR")
    older = PatientTargets(older_or_high_risk=True, timezone="UTC")  # TBR<70 >= 1 % for older adults
    assert fires(evaluate(_cgm_days(_mix(low70=1)), at(13, 23, 59), targets=older), "CGM-TBR")


def test_time_above_range_and_in_range() -> None:
    # CGM-TAR: TAR>250 >= 5 % warning; TAR>180 >= 25 % info. CGM-TIR: TIR < 70 % info [33].
    tar250 = evaluate(_cgm_days(_mix(high250=5)), at(13, 23, 59))
    assert fires(tar250, "CGM-TAR") and tar250["CGM-TAR"].severity is AlertSeverity.WARNING
    assert not fires(evaluate(_cgm_days(_mix(high250=4)), at(13, 23, 59)), "CGM-TAR")
    tar180 = evaluate(_cgm_days(_mix(high180=24)), at(13, 23, 59))
    assert fires(tar180, "CGM-TAR") and tar180["CGM-TAR"].severity is AlertSeverity.INFO
    assert not fires(evaluate(_cgm_days(_mix(high180=23)), at(13, 23, 59)), "CGM-TAR")
    assert fires(evaluate(_cgm_days(_mix(high180=29)), at(13, 23, 59)), "CGM-TIR")
    assert not fires(evaluate(_cgm_days(_mix(high180=28)), at(13, 23, 59)), "CGM-TIR")


def test_glycaemic_variability_and_gri() -> None:
    # CGM-CV: %CV > 36 [32][34]. CGM-GRI: GRI > 60 (zones D/E) [36].
    swings = evaluate(_cgm_days(lambda d, s: 70.0 if s % 2 else 200.0), at(13, 23, 59))
    assert fires(swings, "CGM-CV")  # mean 135, sd 65 -> CV 48 %
    flat = evaluate(_cgm_days(lambda d, s: 110.0 if s % 2 else 130.0), at(13, 23, 59))
    assert not fires(flat, "CGM-CV")
    # GRI = 3.0 x VLow: 21 slots <54 of 96 = 21.9 % -> 65.6 > 60; 20 slots = 62.5; 19 slots = 59.4.
    assert fires(evaluate(_cgm_days(_mix(low54=20)), at(13, 23, 59)), "CGM-GRI")
    assert not fires(evaluate(_cgm_days(_mix(low54=19)), at(13, 23, 59)), "CGM-GRI")


def test_gmi_rise_of_half_a_point() -> None:
    # CGM-GMI: GMI rise >= 0.5 %-points vs previous 14-day window ([35] DEFAULT delta);
    # GMI = 3.31 + 0.02392 x mean: +0.5 points = +20.9 mg/dL.
    rising = _cgm_days(lambda d, s: 120.0, days=14) + [
        cgm(at(14 + d, 0, 15 * s), 141.0) for d in range(14) for s in range(96)
    ]
    assert fires(evaluate(rising, at(27, 23, 59)), "CGM-GMI")
    flat = _cgm_days(lambda d, s: 120.0, days=14) + [
        cgm(at(14 + d, 0, 15 * s), 140.0) for d in range(14) for s in range(96)
    ]
    assert not fires(evaluate(flat, at(27, 23, 59)), "CGM-GMI")


# --- Data quality -----------------------------------------------------------------------------------
def test_stale_data_after_seven_days_or_three_in_titration() -> None:
    # DQ-01: no reading for {titration 3 d | stable 7 d | CGM 30 min} ([58] DEFAULT).
    last = bp(at(0, 8), 130, 80)
    assert not fires(evaluate([last], at(0, 8) + timedelta(days=7)), "DQ-01")
    stale = evaluate([last], at(0, 8) + timedelta(days=7, minutes=1))
    assert fires(stale, "DQ-01") and stale["DQ-01"].severity is AlertSeverity.INFO
    titration = PatientTargets(titration=True, timezone="UTC")
    out = evaluate([last], at(0, 8) + timedelta(days=3, minutes=1), targets=titration)
    assert fires(out, "DQ-01") and out["DQ-01"].severity is AlertSeverity.WARNING
    sensor = [cgm(at(0, 8), 120)]
    assert not fires(evaluate(sensor, at(0, 8, 30)), "DQ-01")
    assert fires(evaluate(sensor, at(0, 8, 31)), "DQ-01")


def test_invalid_reading_is_flagged_and_clears_with_valid_readings() -> None:
    # DQ-02: device status bits / NaN / impossible -> exclude; info [27][61].
    out = evaluate([bp(at(0, 8), None, None)])
    assert fires(out, "DQ-02") and out["DQ-02"].severity is AlertSeverity.INFO
    cleared = evaluate([bp(at(0, 8), None, None), bp(at(0, 8, 2), 130, 80), bp(at(0, 8, 4), 130, 80)])
    assert status(cleared, "DQ-02") is OutcomeStatus.CLEAR


def test_fewer_than_16_data_days_in_30() -> None:
    # DQ-03: < 16 distinct data days in rolling 30 ([57] CPT 99454 needs >= 16).
    sixteen = [bp(at(d, 8), 130, 80) for d in range(0, 30, 2)] + [bp(at(29, 9), 130, 80)]
    assert len({o.measured_at.date() for o in sixteen}) == 16
    assert not fires(evaluate(sixteen, at(29, 23)), "DQ-03")
    fifteen = [bp(at(d, 8), 130, 80) for d in range(0, 30, 2)]
    assert fires(evaluate(fifteen, at(29, 23)), "DQ-03")
    young = [bp(at(d, 8), 130, 80) for d in range(0, 10, 2)]
    assert status(evaluate(young, at(10, 23)), "DQ-03") is OutcomeStatus.UNKNOWN  # enrolled < 30 days


def test_cgm_level_2_episode_of_15_minutes() -> None:
    # CGM: an episode is >= 15 min below the level (ATTD 2017 [34]); Level 2 < 54 is urgent [30][32].
    fourteen = [cgm(at(0, 3, m), 50) for m in (0, 5, 10, 14)]
    assert not fires(evaluate(fourteen), "GLU-HYPO-2")
    fifteen = [cgm(at(0, 3, m), 50) for m in (0, 5, 10, 15)]
    out = evaluate(fifteen)
    assert fires(out, "GLU-HYPO-2") and out["GLU-HYPO-2"].severity is AlertSeverity.URGENT
    interrupted = [cgm(at(0, 3, 0), 50), cgm(at(0, 3, 5), 75), cgm(at(0, 3, 10), 50), cgm(at(0, 3, 15), 50)]
    assert not fires(evaluate(interrupted), "GLU-HYPO-2")
    # Level 1 time on CGM is judged over 14 days by CGM-TBR, not per dip.
    level1 = evaluate([cgm(at(0, 3, m), 60) for m in (0, 5, 10, 15, 20, 25)])
    assert not fires(level1, "GLU-HYPO-1") and not fires(level1, "GLU-HYPO-2")


def test_doctor_targets_override_glucose_thresholds() -> None:
    # Per-patient targets override the profile (§7; e.g. a relaxed hypo threshold for an older adult).
    relaxed = PatientTargets(hypo1_mg_dl=80.0, timezone="UTC")
    assert fires(evaluate([glu(at(0, 7), 79)], profile_name="cn", targets=relaxed), "GLU-HYPO-1")
    assert not fires(evaluate([glu(at(0, 7), 80)], profile_name="cn", targets=relaxed), "GLU-HYPO-1")
    tight = PatientTargets(fasting_limit_mg_dl=110.0, timezone="UTC")
    fasting = [glu(at(d, 6, 30), 110, Meal.FASTING) for d in range(3)]
    assert fires(evaluate(fasting, profile_name="us", targets=tight), "GLU-CTRL-1")
    assert not fires(evaluate(fasting, profile_name="us"), "GLU-CTRL-1")
