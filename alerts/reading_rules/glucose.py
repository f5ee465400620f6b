"""Rules on single glucose readings (fingerstick and CGM), and the reports that bear on them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alerts.model import DKA_SYMPTOMS, KETONE_POSITIVE_MMOL_L, Observation, PatientReport, ReportKind
from alerts.reading_rules.state import Judged, NewReading, PatientReadings
from vitals.payload import AlertSeverity

DKA_WINDOW = timedelta(hours=2)  # GLU-HIGH-3: ketones/symptoms within 2 h of a >= 200 reading (DEFAULT)
CGM_EPISODE = timedelta(minutes=15)  # CGM hypo episodes last >= 15 min (ATTD 2017 [34])
MG_DL_PER_MMOL_L = 18.01559  # vitals.units


def _glucose_values(reading: Observation) -> dict[str, Any]:
    glucose = reading.glucose_mg_dl
    assert glucose is not None
    return {
        "glucose_mg_dl": glucose,
        "glucose_mmol_l": round(glucose / MG_DL_PER_MMOL_L, 2),
        "meal": reading.meal.value if reading.meal else None,
        "measured_at": reading.measured_at.isoformat(),
    }


def _glucose(reading: Observation) -> float:
    assert reading.glucose_mg_dl is not None
    return reading.glucose_mg_dl


def glu_hypo_1(patient: PatientReadings, new: NewReading) -> None:
    """GLU-HYPO-1: a level-1 fingerstick (ADA < 70 mg/dL [30]; CN <= 3.9 mmol/L, urgent [18]). Back in
    range means no longer hypoglycaemic (>= 70 mg/dL, or > 3.9 mmol/L in CN)."""
    reading, params, rule = new.reading, patient.params, patient.episodes["GLU-HYPO-1"]
    glucose = _glucose(reading)
    if not params.is_hypo1(glucose):
        rule.in_range()
    elif glucose < params.hypo2_mg_dl:
        rule.neutral()
    else:
        rule.trigger(
            reading.measured_at, params.hypo1_severity, _glucose_values(reading), [reading.reading_id]
        )


def glu_hypo_2(patient: PatientReadings, new: NewReading) -> None:
    """GLU-HYPO-2: a level-2 fingerstick (ADA < 54 mg/dL [30]), or a CGM episode below 54 (below)."""
    if new.judged_as & Judged.CGM:
        _glu_hypo_2_cgm(patient, new.reading)
        return
    reading, params, rule = new.reading, patient.params, patient.episodes["GLU-HYPO-2"]
    glucose = _glucose(reading)
    if not params.is_hypo1(glucose):
        rule.in_range()
    elif glucose < params.hypo2_mg_dl:
        rule.trigger(
            reading.measured_at, AlertSeverity.URGENT, _glucose_values(reading), [reading.reading_id]
        )
    else:
        rule.neutral()


def _glu_hypo_2_cgm(patient: PatientReadings, reading: Observation) -> None:
    """CGM Level 2 hypoglycaemia: < 54 mg/dL for an episode of >= 15 min ("episodes defined as
    >= 15 min", ATTD 2017 [34]; Level 2 "clinically significant / immediate action", [30][32])
    raises GLU-HYPO-2 as a fingerstick would. Level 1 time on CGM is judged over 14 days by
    CGM-TBR instead: a CGM user at the 4 % TBR target spends about an hour a day below 70, and
    one alert per dip would drown the family doctor (§3.2 alert fatigue). A gap in the sensor data
    longer than 15 min starts a new episode."""
    params, rule = patient.params, patient.episodes["GLU-HYPO-2"]
    glucose = _glucose(reading)
    at = reading.measured_at
    if patient.cgm_last_at is not None and at - patient.cgm_last_at > CGM_EPISODE:
        patient.cgm_below_level_2_since = None
    patient.cgm_last_at = at
    if not params.is_hypo1(glucose):
        patient.cgm_below_level_2_since = None
        rule.in_range()
        return
    if glucose >= params.hypo2_mg_dl:
        patient.cgm_below_level_2_since = None
        rule.neutral()
        return
    since = patient.cgm_below_level_2_since = patient.cgm_below_level_2_since or at
    if at - since >= CGM_EPISODE:
        values: dict[str, Any] = {
            "glucose_mg_dl": glucose,
            "source": "cgm",
            "episode_minutes": (at - since).total_seconds() / 60.0,
            "measured_at": at.isoformat(),
        }
        rule.trigger(at, AlertSeverity.URGENT, values, [reading.reading_id])
    else:
        rule.neutral()


def glu_hypo_3_on_report(patient: PatientReadings, report: PatientReport) -> None:
    """GLU-HYPO-3: a severe (assisted) hypo event reported by the patient or family ([30])."""
    if report.kind is not ReportKind.SEVERE_HYPO_EVENT:
        return
    patient.episodes["GLU-HYPO-3"].trigger(
        report.reported_at,
        AlertSeverity.URGENT,
        {"reported_at": report.reported_at.isoformat(), "report_id": report.report_id},
        ["report:" + report.report_id],
    )
    patient.severe_hypo_at = report.reported_at


def glu_high_1(patient: PatientReadings, new: NewReading) -> None:
    """GLU-HIGH-1: > 250 mg/dL on 2 consecutive readings; prompt a ketone check (> 240) ([32][40])."""
    reading, params, rule = new.reading, patient.params, patient.episodes["GLU-HIGH-1"]
    if _glucose(reading) <= params.high1_mg_dl:
        rule.in_range()
        return
    previous = new.earlier_glucose[-1] if new.earlier_glucose else None
    if (
        previous is not None
        and previous.glucose_mg_dl is not None
        and previous.glucose_mg_dl > params.high1_mg_dl
    ):
        rule.trigger(
            reading.measured_at,
            AlertSeverity.WARNING,
            _glucose_values(reading)
            | {"previous_glucose_mg_dl": previous.glucose_mg_dl, "advice": "check ketones"},
            [previous.reading_id, reading.reading_id],
        )
    else:
        rule.neutral()


def glu_high_2(patient: PatientReadings, new: NewReading) -> None:
    """GLU-HIGH-2: >= 300 mg/dL (16.7 mmol/L); urgent once confirmed ([18][40]). A single reading is
    provisional (warning) until a second >= 300 within 2 h (DEFAULT) confirms it."""
    reading, params, rule = new.reading, patient.params, patient.episodes["GLU-HIGH-2"]
    if _glucose(reading) < params.high2_mg_dl:
        rule.in_range()
        return
    confirming = [
        earlier
        for earlier in new.earlier_glucose
        if earlier.glucose_mg_dl is not None
        and earlier.glucose_mg_dl >= params.high2_mg_dl
        and reading.measured_at - earlier.measured_at <= params.high2_confirm
    ]
    rule.trigger(
        reading.measured_at,
        AlertSeverity.URGENT if confirming else AlertSeverity.WARNING,
        _glucose_values(reading) | {"confirmed": bool(confirming)},
        [confirming[-1].reading_id, reading.reading_id] if confirming else [reading.reading_id],
    )


def glu_high_3(patient: PatientReadings, new: NewReading) -> None:
    """GLU-HIGH-3 on each fingerstick (see `_glu_high_3`)."""
    _glu_high_3(patient)


def glu_high_3_on_report(patient: PatientReadings, report: PatientReport) -> None:
    """GLU-HIGH-3 again when ketones or symptoms are reported, against the latest fingerstick."""
    if report.kind in (ReportKind.SYMPTOMS, ReportKind.KETONES):
        _glu_high_3(patient)


def _glu_high_3(patient: PatientReadings) -> None:
    """GLU-HIGH-3: the latest fingerstick >= 600 mg/dL (HHS range), or >= 200 mg/dL with ketones
    >= 3.0 mmol/L or DKA symptoms reported within 2 h ([39])."""
    params, rule = patient.params, patient.episodes["GLU-HIGH-3"]
    latest = patient.recent_glucose[-1] if patient.recent_glucose else None
    if latest is None or latest.glucose_mg_dl is None:
        return
    glucose = latest.glucose_mg_dl
    if glucose >= params.high3_mg_dl:
        rule.trigger(
            latest.measured_at,
            AlertSeverity.URGENT,
            {"glucose_mg_dl": glucose, "criterion": "HHS range >= 600 mg/dL", "advice": "emergency services"},
            [latest.reading_id],
        )
        return
    if glucose < params.dka_mg_dl:
        rule.in_range()
        return
    ketones = [
        report
        for report in patient.reports
        if report.kind is ReportKind.KETONES
        and report.ketones_mmol_l is not None
        and report.ketones_mmol_l >= KETONE_POSITIVE_MMOL_L
        and abs(report.reported_at - latest.measured_at) <= DKA_WINDOW
    ]
    symptoms = patient.symptoms_near(latest.measured_at, DKA_SYMPTOMS, DKA_WINDOW)
    if not (ketones or symptoms):
        rule.neutral()
        return
    rule.trigger(
        latest.measured_at,
        AlertSeverity.URGENT,
        {
            "glucose_mg_dl": glucose,
            "ketones_mmol_l": ketones[-1].ketones_mmol_l if ketones else None,
            "symptoms": sorted(symptoms),
            "criterion": "ketones/symptoms with >= 200 mg/dL",
            "advice": "emergency services",
        },
        [latest.reading_id],
    )
