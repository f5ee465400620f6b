"""Rules on single blood pressure and pulse readings, and the symptom reports that bear on them."""

from __future__ import annotations

from typing import Any

from alerts.model import CRISIS_SYMPTOMS, LOW_BP_SYMPTOMS, Observation, PatientReport, ReportKind
from alerts.profiles import RuleParameters
from alerts.reading_rules.state import NewReading, PatientReadings
from vitals.payload import AlertSeverity

LOW_PULSE_DAYS_KEPT = 4  # HR-LOW counts within one local day; a few days are kept for late readings


def _at_crisis_level(reading: Observation, params: RuleParameters) -> bool:
    assert reading.systolic_mmhg is not None and reading.diastolic_mmhg is not None
    return (
        reading.systolic_mmhg >= params.crisis_systolic_mmhg
        or reading.diastolic_mmhg >= params.crisis_diastolic_mmhg
    )


def _low(reading: Observation, params: RuleParameters) -> bool:
    assert reading.systolic_mmhg is not None and reading.diastolic_mmhg is not None
    return (
        reading.systolic_mmhg < params.low_systolic_mmhg or reading.diastolic_mmhg < params.low_diastolic_mmhg
    )


def _bp_values(reading: Observation) -> dict[str, Any]:
    return {
        "systolic_mmhg": reading.systolic_mmhg,
        "diastolic_mmhg": reading.diastolic_mmhg,
        "pulse_bpm": reading.pulse_bpm,
        "measured_at": reading.measured_at.isoformat(),
        "irregular_pulse": reading.irregular_pulse,
    }


def _crisis_values(reading: Observation, params: RuleParameters) -> dict[str, Any]:
    return _bp_values(reading) | {
        "crisis_systolic_mmhg": params.crisis_systolic_mmhg,
        "crisis_diastolic_mmhg": params.crisis_diastolic_mmhg,
        "advice": "re-measure after 1-5 min seated rest; check red-flag symptoms",
    }


def bp_crit_1(patient: PatientReadings, new: NewReading) -> None:
    """BP-CRIT-1: a single reading at crisis level, provisional ([4][5][17])."""
    reading, rule = new.reading, patient.episodes["BP-CRIT-1"]
    if _at_crisis_level(reading, patient.params):
        values = _crisis_values(reading, patient.params)
        rule.trigger(reading.measured_at, AlertSeverity.WARNING, values, [reading.reading_id])
    else:
        rule.in_range()


def bp_crit_2(patient: PatientReadings, new: NewReading) -> None:
    """BP-CRIT-2: 2 of 2 readings at crisis level within 15 min ([1][4][17])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["BP-CRIT-2"]
    if not _at_crisis_level(reading, params):
        rule.in_range()
        return
    confirming = [earlier for earlier in new.earlier_in_session if _at_crisis_level(earlier, params)]
    if confirming:
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT,
            _crisis_values(reading, params)
            | {
                "confirming_systolic_mmhg": confirming[-1].systolic_mmhg,
                "confirming_diastolic_mmhg": confirming[-1].diastolic_mmhg,
                "advice": "same-day contact by the family doctor",
            },
            [confirming[-1].reading_id, reading.reading_id],
        )


def bp_crit_3(patient: PatientReadings, new: NewReading) -> None:
    """BP-CRIT-3: a crisis-level reading with a red-flag symptom reported around it ([4][9][17][19])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["BP-CRIT-3"]
    if not _at_crisis_level(reading, params):
        rule.in_range()
        return
    symptoms = patient.symptoms_near(reading.measured_at, CRISIS_SYMPTOMS, params.symptom_window)
    if symptoms:
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT,
            _crisis_values(reading, params)
            | {"symptoms": sorted(symptoms), "advice": "advise emergency services"},
            [reading.reading_id],
        )


def bp_crit_3_on_report(patient: PatientReadings, report: PatientReport) -> None:
    """BP-CRIT-3 from a symptom report after the reading: the symptom window is two-sided."""
    if report.kind is not ReportKind.SYMPTOMS:
        return
    red_flags = report.symptoms & CRISIS_SYMPTOMS
    for reading in _pressures_near(patient, report):
        if red_flags and _at_crisis_level(reading, patient.params):
            patient.episodes["BP-CRIT-3"].trigger(
                reading.measured_at,
                AlertSeverity.URGENT,
                _bp_values(reading) | {"symptoms": sorted(red_flags), "advice": "advise emergency services"},
                [reading.reading_id],
            )


def bp_low_1(patient: PatientReadings, new: NewReading) -> None:
    """BP-LOW-1: SBP < 90 or DBP < 60 on 2 readings in one session; urgent with dizziness, syncope or
    confusion reported ([28][19])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["BP-LOW-1"]
    if not _low(reading, params):
        rule.in_range()
        return
    low_earlier = [earlier for earlier in new.earlier_in_session if _low(earlier, params)]
    if not low_earlier:
        rule.neutral()
        return
    symptoms = patient.symptoms_near(reading.measured_at, LOW_BP_SYMPTOMS, params.symptom_window)
    rule.trigger(
        reading.measured_at,
        AlertSeverity.URGENT if symptoms else AlertSeverity.WARNING,
        _bp_values(reading)
        | {
            "previous_systolic_mmhg": low_earlier[-1].systolic_mmhg,
            "previous_diastolic_mmhg": low_earlier[-1].diastolic_mmhg,
            "symptoms": sorted(symptoms),
        },
        [low_earlier[-1].reading_id, reading.reading_id],
    )


def bp_low_1_on_report(patient: PatientReadings, report: PatientReport) -> None:
    """BP-LOW-1 becomes urgent when dizziness, syncope or confusion is reported near its readings."""
    if report.kind is not ReportKind.SYMPTOMS:
        return
    low_symptoms = report.symptoms & LOW_BP_SYMPTOMS
    rule = patient.episodes["BP-LOW-1"]
    for reading in _pressures_near(patient, report):
        if low_symptoms and rule.episode is not None:
            rule.trigger(
                reading.measured_at,
                AlertSeverity.URGENT,
                _bp_values(reading) | {"symptoms": sorted(low_symptoms)},
                [reading.reading_id],
            )


def _pressures_near(patient: PatientReadings, report: PatientReport) -> list[Observation]:
    """The recent valid blood pressures within the symptom window of a report."""
    return [
        reading
        for reading in patient.recent_bp
        if abs(reading.measured_at - report.reported_at) <= patient.params.symptom_window
        and reading.usable_bp
    ]


def hr_irr(patient: PatientReadings, new: NewReading) -> None:
    """HR-IRR: irregular-pulse flag in >= 2 of 3 sequential readings, or in >= 2 sessions within 7 days
    ([9][25a][25b][27])."""
    reading, rule = new.reading, patient.episodes["HR-IRR"]
    last_three = list(patient.recent_bp)[-3:]
    flagged_of_three = sum(earlier.irregular_pulse for earlier in last_three)
    flagged_sessions = [
        session
        for session in patient.sessions
        if session.irregular and reading.measured_at - session.start <= patient.params.irr_window
    ]
    if reading.irregular_pulse and (flagged_of_three >= 2 or len(flagged_sessions) >= 2):
        rule.trigger(
            reading.measured_at,
            AlertSeverity.WARNING,
            {
                "flagged_of_last_3_readings": flagged_of_three,
                "flagged_sessions_7_days": len(flagged_sessions),
                "advice": "12-lead ECG; BP accuracy reduced with irregular pulse",
            },
            [earlier.reading_id for earlier in last_three if earlier.irregular_pulse],
        )
    elif reading.irregular_pulse:
        rule.neutral()
    else:
        rule.in_range()


def hr_low(patient: PatientReadings, new: NewReading) -> None:
    """HR-LOW: pulse < 50 on >= 2 readings in one (local) day; urgent when both are < 40 (DEFAULT)
    ([23])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["HR-LOW"]
    assert reading.pulse_bpm is not None
    day = reading.measured_at.astimezone(patient.zone).date().isoformat()
    if reading.pulse_bpm < params.hr_low_bpm:
        lows = patient.low_pulse_by_day.setdefault(day, [])
        lows.append(reading)
        if len(lows) >= 2:
            below_urgent = sum(
                low.pulse_bpm is not None and low.pulse_bpm < params.hr_low_urgent_bpm for low in lows
            )
            rule.trigger(
                reading.measured_at,
                AlertSeverity.URGENT if below_urgent >= 2 else AlertSeverity.WARNING,
                {"pulse_bpm": [low.pulse_bpm for low in lows], "local_day": day},
                [low.reading_id for low in lows],
            )
        else:
            rule.neutral()
    else:
        rule.in_range()
    if len(patient.low_pulse_by_day) > LOW_PULSE_DAYS_KEPT:
        for old_day in sorted(patient.low_pulse_by_day)[:-LOW_PULSE_DAYS_KEPT]:
            del patient.low_pulse_by_day[old_day]


def hr_high(patient: PatientReadings, new: NewReading) -> None:
    """HR-HIGH: session mean pulse > 100 in >= 2 consecutive sessions; urgent when both are > 120
    (DEFAULT) ([24][18])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["HR-HIGH"]
    session_means: list[float] = []
    for session in reversed(patient.sessions):
        mean = session.mean_pulse
        if mean is not None:
            session_means.insert(0, mean)
            if len(session_means) == 2:
                break
    current = session_means[-1]
    if current > params.hr_high_bpm and len(session_means) >= 2 and session_means[-2] > params.hr_high_bpm:
        previous = session_means[-2]
        urgent = current > params.hr_high_urgent_bpm and previous > params.hr_high_urgent_bpm
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT if urgent else AlertSeverity.WARNING,
            {"session_mean_pulse_bpm": [previous, current]},
            [reading.reading_id],
        )
    elif current > params.hr_high_bpm:
        rule.neutral()
    else:
        rule.in_range()
