"""Reading-level blood-pressure and pulse rules at their thresholds (clinical-rules.md §7)."""

from __future__ import annotations

import pytest

from alerts.model import OutcomeStatus, ReportKind
from tests.alerts.helpers import at, bp, evaluate, fires, report, status
from vitals.payload import AlertSeverity


# BP-CRIT-1: single BP SBP >= 180 or DBP >= {US/EU: 120 | CN: 110} [4][5][17].
@pytest.mark.parametrize(
    ("profile_name", "systolic", "diastolic", "expected"),
    [
        ("eu", 180, 100, True),  # SBP exactly 180 fires (>=)
        ("eu", 179, 100, False),  # just inside
        ("eu", 150, 120, True),  # DBP 120 fires in EU/US
        ("us", 150, 119, False),
        ("cn", 150, 110, True),  # CN crisis DBP 110 [17]
        ("cn", 150, 109, False),
        ("us", 150, 110, False),  # the same reading is not a crisis in the US profile
    ],
)
def test_crisis_single_reading_is_provisional_warning(
    profile_name: str, systolic: float, diastolic: float, expected: bool
) -> None:
    out = evaluate([bp(at(0, 8), systolic, diastolic)], profile_name=profile_name)
    assert fires(out, "BP-CRIT-1") is expected
    if expected:
        assert out["BP-CRIT-1"].severity is AlertSeverity.WARNING
        assert not fires(out, "BP-CRIT-2")  # one reading never confirms a crisis [4]


def test_crisis_confirmed_by_repeat_within_15_min_is_urgent() -> None:
    # BP-CRIT-2: 2 of 2 readings at crisis level, repeat within 15 min [1][4][17].
    out = evaluate([bp(at(0, 8), 182, 100), bp(at(0, 8, 15), 181, 100)])
    assert fires(out, "BP-CRIT-2")
    assert out["BP-CRIT-2"].severity is AlertSeverity.URGENT


def test_crisis_repeat_after_15_min_or_below_threshold_does_not_confirm() -> None:
    # BP-CRIT-2 window is 15 min [4]: 16 min later is a new single reading.
    late = evaluate([bp(at(0, 8), 182, 100), bp(at(0, 8, 16), 181, 100)])
    assert not fires(late, "BP-CRIT-2")
    below = evaluate([bp(at(0, 8), 182, 100), bp(at(0, 8, 5), 179, 119)])
    assert not fires(below, "BP-CRIT-2")


def test_flagged_or_nan_reading_never_triggers_a_crisis() -> None:
    # R = single valid reading; movement/cuff/position flags and NaN are excluded (DQ-02) [27][61].
    out = evaluate([bp(at(0, 8), 200, 125, excluded=True), bp(at(0, 8, 3), 201, 125, excluded=True)])
    assert not fires(out, "BP-CRIT-1")
    assert not fires(out, "BP-CRIT-2")
    assert fires(out, "DQ-02")
    nan = evaluate([bp(at(0, 8), None, None)])
    assert status(nan, "BP-CRIT-1") is OutcomeStatus.UNKNOWN


def test_crisis_with_red_flag_symptom_is_urgent_emergency_advice() -> None:
    # BP-CRIT-3: crisis + chest pain etc. -> advise emergency services [4][9][17][19].
    reading = bp(at(0, 8), 185, 100)
    symptom = report(at(0, 8, 20), ReportKind.SYMPTOMS, symptoms=frozenset({"chest_pain"}))
    out = evaluate([reading, symptom])
    assert fires(out, "BP-CRIT-3")
    assert "emergency" in out["BP-CRIT-3"].values["advice"]
    # A symptom that is not a red flag, or a red flag with a non-crisis reading, does not.
    assert not fires(
        evaluate([reading, report(at(0, 8, 20), ReportKind.SYMPTOMS, symptoms=frozenset({"dizziness"}))]),
        "BP-CRIT-3",
    )
    assert not fires(evaluate([bp(at(0, 8), 179, 100), symptom]), "BP-CRIT-3")


def test_crisis_clears_after_two_consecutive_in_range_readings() -> None:
    # ESC-1: auto-resolve after value back in range for 2 consecutive readings [58].
    one = evaluate([bp(at(0, 8), 185, 100), bp(at(0, 12), 150, 90)])
    assert fires(one, "BP-CRIT-1")
    two = evaluate([bp(at(0, 8), 185, 100), bp(at(0, 12), 150, 90), bp(at(0, 18), 148, 88)])
    assert status(two, "BP-CRIT-1") is OutcomeStatus.CLEAR


# BP-LOW-1: SBP < 90 or DBP < 60 on 2 readings in one session [28][19].
@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ((89, 70), (89, 70), True),
        ((90, 60), (90, 60), False),  # exactly 90/60 is not low (strict <)
        ((110, 59), (112, 59), True),
        ((89, 70), (95, 70), False),  # only one of the two is low
    ],
)
def test_low_bp_needs_two_low_readings_in_a_session(
    first: tuple[float, float], second: tuple[float, float], expected: bool
) -> None:
    out = evaluate([bp(at(0, 8), *first), bp(at(0, 8, 2), *second)])
    assert fires(out, "BP-LOW-1") is expected


def test_low_bp_with_dizziness_is_urgent_and_single_low_is_silent() -> None:
    # BP-LOW-1: warning; urgent if symptomatic (dizziness/syncope/confusion) [28][19].
    items = [bp(at(0, 8), 85, 55), bp(at(0, 8, 2), 86, 56)]
    assert evaluate(items)["BP-LOW-1"].severity is AlertSeverity.WARNING
    dizzy = report(at(0, 8, 10), ReportKind.SYMPTOMS, symptoms=frozenset({"dizziness"}))
    assert evaluate([*items, dizzy])["BP-LOW-1"].severity is AlertSeverity.URGENT
    # two low readings 16 min apart are two sessions
    assert not fires(evaluate([bp(at(0, 8), 85, 55), bp(at(0, 8, 16), 86, 56)]), "BP-LOW-1")


# HR-LOW: pulse < 50 on >= 2 readings/day; DEFAULT urgent < 40 [23].
@pytest.mark.parametrize(
    ("pulses", "expected", "severity"),
    [
        ((49, 49), True, AlertSeverity.WARNING),
        ((50, 49), False, None),  # 50 is not bradycardia (< 50)
        ((39, 39), True, AlertSeverity.URGENT),
        ((40, 39), True, AlertSeverity.WARNING),  # urgent needs both < 40
    ],
)
def test_bradycardia_two_readings_a_day(
    pulses: tuple[float, float], expected: bool, severity: AlertSeverity | None
) -> None:
    out = evaluate([bp(at(0, 8), 120, 75, pulses[0]), bp(at(0, 20), 120, 75, pulses[1])])
    assert fires(out, "HR-LOW") is expected
    assert out["HR-LOW"].severity is severity


def test_bradycardia_on_two_different_days_is_not_two_a_day() -> None:
    out = evaluate([bp(at(0, 20), 120, 75, 45), bp(at(1, 8), 120, 75, 45)])
    assert not fires(out, "HR-LOW")


# HR-HIGH: pulse > 100 persistent (>= 2 sessions); DEFAULT urgent > 120 [24][18].
@pytest.mark.parametrize(
    ("pulses", "expected", "severity"),
    [
        ((101, 101), True, AlertSeverity.WARNING),
        ((100, 101), False, None),  # 100 is not tachycardia (> 100)
        ((121, 121), True, AlertSeverity.URGENT),
        ((121, 120), True, AlertSeverity.WARNING),
    ],
)
def test_tachycardia_two_sessions(
    pulses: tuple[float, float], expected: bool, severity: AlertSeverity | None
) -> None:
    out = evaluate([bp(at(0, 8), 120, 75, pulses[0]), bp(at(0, 20), 120, 75, pulses[1])])
    assert fires(out, "HR-HIGH") is expected
    assert out["HR-HIGH"].severity is severity


def test_tachycardia_in_one_session_only_is_not_persistent() -> None:
    out = evaluate([bp(at(0, 8), 120, 75, 110), bp(at(0, 8, 2), 120, 75, 112)])
    assert not fires(out, "HR-HIGH")


# HR-IRR: irregular flag in >= 2 of 3 sequential readings, or >= 2 sessions / 7 days [9][25a][25b][27].
def test_irregular_pulse_two_of_three_fires_and_one_does_not() -> None:
    two = evaluate(
        [
            bp(at(0, 8), 120, 75, irregular=True),
            bp(at(0, 8, 2), 120, 75),
            bp(at(0, 8, 4), 120, 75, irregular=True),
        ]
    )
    assert fires(two, "HR-IRR")
    one = evaluate(
        [bp(at(0, 8), 120, 75, irregular=True), bp(at(0, 8, 2), 120, 75), bp(at(0, 8, 4), 120, 75)]
    )
    assert not fires(one, "HR-IRR")


def test_irregular_pulse_in_two_sessions_within_7_days() -> None:
    within = evaluate([bp(at(0, 8), 120, 75, irregular=True), bp(at(6, 8), 120, 75, irregular=True)])
    assert fires(within, "HR-IRR")
    apart = evaluate(
        [
            bp(at(0, 8), 120, 75, irregular=True),
            bp(at(3, 8), 120, 75),
            bp(at(3, 9), 120, 75),
            bp(at(8, 8), 120, 75, irregular=True),
        ]
    )
    assert not fires(apart, "HR-IRR")


def test_standing_fall_of_20_reported_is_overtreatment_signal() -> None:
    # BP-LOW-2: standing SBP fall >= 20 mmHg (orthostatic consensus [29], NICE [9]).
    sitting = bp(at(0, 8), 130, 80)
    fall20 = report(
        at(0, 9), ReportKind.ORTHOSTATIC, seated_systolic_mmhg=130.0, standing_systolic_mmhg=110.0
    )
    fall19 = report(
        at(0, 9), ReportKind.ORTHOSTATIC, seated_systolic_mmhg=130.0, standing_systolic_mmhg=111.0
    )
    assert fires(evaluate([sitting, fall20]), "BP-LOW-2")
    assert not fires(evaluate([sitting, fall19]), "BP-LOW-2")
