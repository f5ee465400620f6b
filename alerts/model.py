"""What the rules see: observations (readings reduced to rule inputs), patient reports and outcomes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from vitals.payload import AlertSeverity
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    GlucoseReading,
    Meal,
    SampleLocation,
    SampleType,
)


class ObservationKind(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    GLUCOSE = "glucose"  # capillary (SMBG)
    CGM = "cgm"  # interstitial fluid, continuous


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One reading as the rules need it. Values are canonical (mmHg, bpm, mg/dL)."""

    patient_id: str
    reading_id: str
    measured_at: datetime  # UTC, aware
    kind: ObservationKind
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    pulse_bpm: float | None = None
    glucose_mg_dl: float | None = None
    meal: Meal | None = None
    irregular_pulse: bool = False
    # Excluded from averages and from single-reading rules: device status flags (movement, cuff fit,
    # position), NaN / reserved SFLOAT, physiologically impossible (clinical-rules.md §7 DQ-02, [27][61]).
    excluded_from_averages: bool = False
    exclusion_reasons: tuple[str, ...] = ()

    @property
    def usable_bp(self) -> bool:
        return (
            self.kind is ObservationKind.BLOOD_PRESSURE
            and not self.excluded_from_averages
            and _finite(self.systolic_mmhg)
            and _finite(self.diastolic_mmhg)
        )

    @property
    def usable_glucose(self) -> bool:
        return (
            self.kind is not ObservationKind.BLOOD_PRESSURE
            and not self.excluded_from_averages
            and _finite(self.glucose_mg_dl)
        )

    @property
    def usable_pulse(self) -> bool:
        return (
            self.kind is ObservationKind.BLOOD_PRESSURE
            and not self.excluded_from_averages
            and _finite(self.pulse_bpm)
        )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def observation_from_reading(reading: BloodPressureReading | GlucoseReading) -> Observation:
    """Reduce a vitals reading to an observation. A reading without a patient cannot be evaluated."""
    if reading.patient_id is None:
        raise ValueError("reading has no patient_id (unbound meter); it cannot be evaluated")
    if isinstance(reading, BloodPressureReading):
        flags = sorted(s.value for s in reading.measurement_status)
        reasons = tuple(reading.invalid_reasons) + tuple(
            f"measurement_status: {f}" for f in flags if f != BloodPressureStatus.IRREGULAR_PULSE.value
        )
        return Observation(
            patient_id=reading.patient_id,
            reading_id=reading.reading_id,
            measured_at=reading.measured_at,
            kind=ObservationKind.BLOOD_PRESSURE,
            systolic_mmhg=reading.systolic_mmhg,
            diastolic_mmhg=reading.diastolic_mmhg,
            pulse_bpm=reading.pulse_bpm,
            irregular_pulse=BloodPressureStatus.IRREGULAR_PULSE in reading.measurement_status,
            excluded_from_averages=reading.excluded_from_averages,
            exclusion_reasons=reasons if reading.excluded_from_averages else (),
        )
    cgm = (
        reading.sample_type is SampleType.INTERSTITIAL_FLUID
        or reading.sample_location is SampleLocation.SUBCUTANEOUS_TISSUE
    )
    return Observation(
        patient_id=reading.patient_id,
        reading_id=reading.reading_id,
        measured_at=reading.measured_at,
        kind=ObservationKind.CGM if cgm else ObservationKind.GLUCOSE,
        glucose_mg_dl=reading.glucose_mg_dl,
        meal=reading.context.meal if reading.context else None,
        excluded_from_averages=not reading.valid,
        exclusion_reasons=tuple(reading.invalid_reasons),
    )


class ReportKind(StrEnum):
    """Patient-reported input the gateway cannot supply (a meter has no symptom or event channel).

    They reach the engine through the API (a clinician or the patient's app records them).
    """

    SYMPTOMS = "symptoms"  # BP-CRIT-3 red flags, BP-LOW-1 dizziness/syncope/confusion
    SEVERE_HYPO_EVENT = "severe_hypo_event"  # GLU-HYPO-3: assisted event ([30])
    KETONES = "ketones"  # GLU-HIGH-3: blood beta-hydroxybutyrate mmol/L or urine ketones
    MEDICATION_CHANGE = "medication_change"  # BP-LOW-2 baseline
    ORTHOSTATIC = "orthostatic"  # BP-LOW-2: seated and standing SBP (posture is not in BLS)


# BP-CRIT-3 red flags ([4][9][17][19]).
CRISIS_SYMPTOMS = frozenset(
    {
        "chest_pain",
        "dyspnoea",
        "back_pain",
        "numbness_weakness",
        "neuro_deficit",
        "vision_change",
        "speech_difficulty",
        "severe_headache",
        "vomiting",
        "altered_consciousness",
        "pregnancy",
    }
)
# BP-LOW-1 urgent when symptomatic ([28][19]).
LOW_BP_SYMPTOMS = frozenset({"dizziness", "syncope", "confusion", "altered_consciousness"})
# GLU-HIGH-3 DKA symptoms ([39], [18] list quoted from memory — verify).
DKA_SYMPTOMS = frozenset(
    {"fruity_breath", "vomiting", "abdominal_pain", "deep_breathing", "altered_consciousness", "polyuria"}
)
KETONE_POSITIVE_MMOL_L = 3.0  # beta-hydroxybutyrate >= 3.0 mmol/L ([39])


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientReport:
    patient_id: str
    report_id: str
    reported_at: datetime
    kind: ReportKind
    symptoms: frozenset[str] = frozenset()
    ketones_mmol_l: float | None = None
    seated_systolic_mmhg: float | None = None
    standing_systolic_mmhg: float | None = None


class OutcomeStatus(StrEnum):
    FIRING = "firing"
    CLEAR = "clear"  # the condition has cleared: auto-resolve
    UNKNOWN = "unknown"  # not enough data to say either way: leave any alert as it is
    # An episode that fired and cleared again among readings evaluated together for the first time
    # (a gateway's backlog): it gets its alert, opened and resolved at once, unless it has one.
    ENDED = "ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One rule's verdict for one patient at one time."""

    rule_id: str
    patient_id: str
    status: OutcomeStatus
    severity: AlertSeverity | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    values: dict[str, Any] = field(default_factory=dict)
    reading_ids: tuple[str, ...] = ()
    # Identifies the episode (e.g. the first triggering reading) so a redelivered reading after a
    # manual resolve is recognised as the same episode.
    episode_key: str | None = None


class ReportRepository(Protocol):
    """Where patient reports live: `alerts.repository.SqlReportStore` (clinic database) in the clinic
    server, `ReportStore` (memory) for replay and tests. Both are idempotent on `report_id`."""

    def add(self, report: PatientReport) -> bool: ...

    def for_patient(self, patient_id: str, start: datetime, end: datetime) -> list[PatientReport]: ...


class ReportStore:
    """Patient reports by patient, in memory (replay, tests)."""

    def __init__(self) -> None:
        self._reports: dict[str, dict[str, PatientReport]] = {}

    def add(self, report: PatientReport) -> bool:
        """False if this report id was already stored (idempotent)."""
        by_id = self._reports.setdefault(report.patient_id, {})
        if report.report_id in by_id:
            return False
        by_id[report.report_id] = report
        return True

    def for_patient(self, patient_id: str, start: datetime, end: datetime) -> list[PatientReport]:
        return sorted(
            (r for r in self._reports.get(patient_id, {}).values() if start <= r.reported_at <= end),
            key=lambda r: r.reported_at,
        )
