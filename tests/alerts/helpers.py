"""Builders for rule tests: observations at chosen times, evaluated as the live engine does."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alerts.evaluate import PatientHistory, evaluate_patient
from alerts.model import Observation, ObservationKind, Outcome, OutcomeStatus, PatientReport, ReportKind
from alerts.profiles import PatientTargets, parameters, profile
from vitals.readings import Meal
from vitals.units import mmol_l_to_mg_dl

PATIENT = "pt-test"
# A Monday, 00:00 UTC; tests use timezone UTC so local hours are the hours written.
T0 = datetime(2026, 3, 2, tzinfo=UTC)
_counter = itertools.count()


def _rid() -> str:
    return hashlib.sha256(f"r{next(_counter)}".encode()).hexdigest()[:32]


def at(day: float = 0, hour: float = 0, minute: float = 0) -> datetime:
    return T0 + timedelta(days=day, hours=hour, minutes=minute)


def bp(
    when: datetime,
    systolic: float | None,
    diastolic: float | None,
    pulse: float | None = 72.0,
    *,
    excluded: bool = False,
    irregular: bool = False,
) -> Observation:
    nan = systolic is None or diastolic is None
    return Observation(
        patient_id=PATIENT,
        reading_id=_rid(),
        measured_at=when,
        kind=ObservationKind.BLOOD_PRESSURE,
        systolic_mmhg=systolic,
        diastolic_mmhg=diastolic,
        pulse_bpm=pulse,
        irregular_pulse=irregular,
        excluded_from_averages=excluded or nan,
        exclusion_reasons=("measurement_status: body_movement",) if excluded else (),
    )


def glu(when: datetime, mg_dl: float, meal: Meal | None = None, *, excluded: bool = False) -> Observation:
    return Observation(
        patient_id=PATIENT,
        reading_id=_rid(),
        measured_at=when,
        kind=ObservationKind.GLUCOSE,
        glucose_mg_dl=mg_dl,
        meal=meal,
        excluded_from_averages=excluded,
    )


def glu_mmol(when: datetime, mmol_l: float, meal: Meal | None = None) -> Observation:
    return glu(when, mmol_l_to_mg_dl(mmol_l), meal)


def cgm(when: datetime, mg_dl: float) -> Observation:
    return Observation(
        patient_id=PATIENT, reading_id=_rid(), measured_at=when, kind=ObservationKind.CGM, glucose_mg_dl=mg_dl
    )


def report(when: datetime, kind: ReportKind, **kw: object) -> PatientReport:
    return PatientReport(patient_id=PATIENT, report_id=_rid(), reported_at=when, kind=kind, **kw)  # type: ignore[arg-type]


def evaluate(
    items: Sequence[Observation | PatientReport],
    now: datetime | None = None,
    *,
    profile_name: str = "eu",
    targets: PatientTargets | None = None,
) -> dict[str, Outcome]:
    obs = [i for i in items if isinstance(i, Observation)]
    reps = [i for i in items if isinstance(i, PatientReport)]
    if now is None:
        times = [o.measured_at for o in obs] + [r.reported_at for r in reps]
        now = max(times) + timedelta(seconds=1)
    t = targets or PatientTargets(timezone="UTC")
    if t.timezone is None:
        t = replace(t, timezone="UTC")
    params = parameters(profile(profile_name), t)
    return {o.rule_id: o for o in evaluate_patient(PatientHistory(PATIENT, obs, reps), params, now)}


def fires(outcomes: dict[str, Outcome], rule_id: str) -> bool:
    return outcomes[rule_id].status is OutcomeStatus.FIRING


def status(outcomes: dict[str, Outcome], rule_id: str) -> OutcomeStatus:
    return outcomes[rule_id].status


def twice_daily(
    days: Sequence[int], systolic: float, diastolic: float, *, per_session: int = 2, pulse: float = 72.0
) -> list[Observation]:
    """HBPM protocol readings: duplicates at 07:00 and 20:00 on each day (clinical-rules.md §1.3)."""
    out = []
    for d in days:
        for hour in (7, 20):
            for k in range(per_session):
                out.append(bp(at(d, hour, 2 * k), systolic, diastolic, pulse))
    return out
