"""The order in which the alert engine evaluates committed readings: urgent ones first.

Ingest hands the engine every committed batch, and the engine evaluates one patient at a time per
worker, each patient with all of its readings committed since its last turn. When readings come in
faster than they are evaluated (a busy clinic, gateways catching up after an outage), patients wait
their turn; a level-2 hypoglycaemia must not wait behind a queue of in-range readings. A reading
that could raise an urgent single-reading alert under any guideline profile puts its patient at the
head of the queue:

- glucose below the level-2 limit, 54 mg/dL (GLU-HYPO-2, ADA [30]), or at or below a profile's
  level-1 limit where that profile makes level 1 urgent (CN, <= 3.9 mmol/L [18]);
- glucose in the HHS range, >= 600 mg/dL (GLU-HIGH-3 [39]);
- blood pressure at a profile's crisis level (BP-CRIT-*, [4][5][17]).

The screen orders the work and decides nothing: every reading is evaluated by the rules in full,
with the patient's own parameters, whichever queue it waited in. (Keys: docs/references.md.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from alerts.profiles import PROFILES, RuleParameters
from storage.readings.protocol import AnyReading
from vitals.payload import AlertSeverity
from vitals.readings import BloodPressureReading

_DEFAULT = {f.name: f.default for f in fields(RuleParameters)}
#: Glucose (mg/dL) below which a reading is level 2 under every profile.
LEVEL_2_BELOW_MG_DL = float(_DEFAULT["hypo2_mg_dl"])  # type: ignore[arg-type]
#: Glucose (mg/dL) at or below which a reading is urgent under a profile that makes level 1 urgent.
URGENT_LEVEL_1_AT_OR_BELOW_MG_DL = max(
    (
        p.hypo1_inclusive_mg_dl
        for p in PROFILES.values()
        if p.hypo1_severity is AlertSeverity.URGENT and p.hypo1_inclusive_mg_dl is not None
    ),
    default=0.0,
)
HHS_RANGE_FROM_MG_DL = float(_DEFAULT["high3_mg_dl"])  # type: ignore[arg-type]
CRISIS_SYSTOLIC_FROM_MMHG = min(p.crisis_systolic_mmhg for p in PROFILES.values())
CRISIS_DIASTOLIC_FROM_MMHG = min(p.crisis_diastolic_mmhg for p in PROFILES.values())


def may_be_urgent(reading: AnyReading) -> bool:
    """Whether `reading` could raise an urgent single-reading alert under some guideline profile."""
    if isinstance(reading, BloodPressureReading):
        systolic, diastolic = reading.systolic_mmhg, reading.diastolic_mmhg
        return (systolic is not None and systolic >= CRISIS_SYSTOLIC_FROM_MMHG) or (
            diastolic is not None and diastolic >= CRISIS_DIASTOLIC_FROM_MMHG
        )
    glucose = reading.glucose_mg_dl
    if glucose is None:
        return False
    return (
        glucose < LEVEL_2_BELOW_MG_DL
        or glucose <= URGENT_LEVEL_1_AT_OR_BELOW_MG_DL
        or glucose >= HHS_RANGE_FROM_MG_DL
    )


class EvaluationQueue:
    """Patients waiting for evaluation, each with the readings committed for it since its last turn;
    patients with a reading that may be urgent first, then the others, each group oldest first."""

    def __init__(self) -> None:
        self._urgent: dict[str, list[AnyReading]] = {}
        self._routine: dict[str, list[AnyReading]] = {}

    def add(self, batch: Iterable[AnyReading]) -> None:
        for reading in batch:
            patient_id = reading.patient_id
            if patient_id is None:
                continue
            if patient_id in self._urgent:
                self._urgent[patient_id].append(reading)
            elif may_be_urgent(reading):
                self._urgent[patient_id] = [*self._routine.pop(patient_id, []), reading]
            else:
                self._routine.setdefault(patient_id, []).append(reading)

    def pop(self) -> tuple[str, list[AnyReading]] | None:
        """The next patient to evaluate and its readings, or None when nobody waits."""
        for waiting in (self._urgent, self._routine):
            if waiting:
                patient_id = next(iter(waiting))
                return patient_id, waiting.pop(patient_id)
        return None

    @property
    def urgent_waiting(self) -> bool:
        return bool(self._urgent)

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)
