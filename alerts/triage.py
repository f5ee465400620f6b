"""The order in which the alert engine evaluates committed readings: urgent ones first.

Ingest hands the engine every committed batch, and the engine evaluates one patient at a time per
worker, each patient with all of its readings committed since its last turn. When readings come in
faster than they are evaluated (a busy clinic, gateways catching up after an outage), patients wait
their turn; a level-2 hypoglycaemia must not wait behind a queue of in-range readings. A reading at
a limit where a single-reading rule may raise an urgent alert puts its patient at the head of the
queue, judged with the patient's own rule parameters once the engine has evaluated the patient, and
until then under every guideline profile's defaults (alerts.profiles):

- glucose below the level-2 limit (GLU-HYPO-2, [30]), or level 1 where the profile makes it urgent
  (CN, <= 3.9 mmol/L [18]), at or above the GLU-HIGH-2 limit (urgent once confirmed, [18][40]) or in
  the HHS range (GLU-HIGH-3 [39]);
- blood pressure at the crisis level (BP-CRIT-*, [4][5][17]), or a pulse beyond the urgent limits
  of HR-LOW and HR-HIGH.

The screen orders the work and decides nothing: every reading is evaluated by the rules in full,
with the patient's own parameters, whichever queue it waited in. (Keys: docs/references.md.)

Being first in the queue is not enough where evaluations share one interpreter: routine evaluations
running beside an urgent one take turns with it for the interpreter lock, and each of its database
reads gives its turn away. So while an urgent evaluation is in flight no routine one starts (those
already running finish); routine work resumes when no urgent evaluation is left, or, under a stream
of urgent readings that never leaves none in flight (a backlog replayed, screened under every
profile's limits), once a routine turn has waited ROUTINE_MAX_WAIT_S: routine readings are delayed,
never starved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alerts.profiles import PROFILES, RuleParameters, parameters
from storage.readings.protocol import AnyReading
from vitals.payload import AlertSeverity
from vitals.readings import BloodPressureReading

#: The longest a routine turn waits behind urgent evaluations in flight.
ROUTINE_MAX_WAIT_S = 2.0

#: The defaults of every guideline profile: the screen for a patient not evaluated yet.
EVERY_PROFILE: tuple[RuleParameters, ...] = tuple(parameters(profile) for profile in PROFILES.values())


def may_be_urgent(reading: AnyReading, candidates: Sequence[RuleParameters] = EVERY_PROFILE) -> bool:
    """Whether `reading` is at a limit where a single-reading rule may raise an urgent alert under
    any of `candidates` (the patient's own parameters, or every profile's defaults)."""
    return any(_at_an_urgent_limit(reading, params) for params in candidates)


def _at_an_urgent_limit(reading: AnyReading, params: RuleParameters) -> bool:
    if isinstance(reading, BloodPressureReading):
        systolic, diastolic, pulse = reading.systolic_mmhg, reading.diastolic_mmhg, reading.pulse_bpm
        return (
            (systolic is not None and systolic >= params.crisis_systolic_mmhg)
            or (diastolic is not None and diastolic >= params.crisis_diastolic_mmhg)
            or (pulse is not None and not params.hr_low_urgent_bpm <= pulse <= params.hr_high_urgent_bpm)
        )
    glucose = reading.glucose_mg_dl
    if glucose is None:
        return False
    return (
        glucose < params.hypo2_mg_dl
        or (params.hypo1_severity is AlertSeverity.URGENT and params.is_hypo1(glucose))
        or glucose >= params.high2_mg_dl
    )


@dataclass(frozen=True, slots=True)
class Turn:
    """One patient's evaluation: the readings committed for it since its last turn."""

    patient_id: str
    readings: list[AnyReading]
    urgent: bool


class EvaluationQueue:
    """Patients waiting for evaluation, each with the readings committed for it since its last turn;
    patients with a reading that may be urgent first, then the others, each group oldest first."""

    def __init__(self, routine_max_wait_s: float = ROUTINE_MAX_WAIT_S) -> None:
        self._routine_max_wait_s = routine_max_wait_s
        self._urgent: dict[str, list[AnyReading]] = {}
        self._routine: dict[str, list[AnyReading]] = {}
        self._parameters: dict[str, tuple[RuleParameters]] = {}
        self._urgent_in_flight = 0
        self._changed = asyncio.Event()  # an urgent turn waits, or the last urgent one ended

    def know(self, patient_id: str, params: RuleParameters) -> None:
        """Screen `patient_id`'s next readings with its own rule parameters (profile and targets)."""
        self._parameters[patient_id] = (params,)

    def add(self, batch: Iterable[AnyReading]) -> None:
        for reading in batch:
            patient_id = reading.patient_id
            if patient_id is None:
                continue
            if patient_id in self._urgent:
                self._urgent[patient_id].append(reading)
            elif may_be_urgent(reading, self._parameters.get(patient_id, EVERY_PROFILE)):
                self._urgent[patient_id] = [*self._routine.pop(patient_id, []), reading]
                self._changed.set()
            else:
                self._routine.setdefault(patient_id, []).append(reading)

    def pop(self) -> tuple[str, list[AnyReading]] | None:
        """The next patient to evaluate and its readings, or None when nobody waits."""
        for waiting in (self._urgent, self._routine):
            if waiting:
                patient_id = next(iter(waiting))
                return patient_id, waiting.pop(patient_id)
        return None

    async def next_turn(self) -> Turn | None:
        """The next turn for an evaluation worker, or None when nobody waits. A routine turn waits
        while an urgent evaluation is in flight, for ROUTINE_MAX_WAIT_S at most; the caller reports
        each turn's end (`finished`)."""
        loop = asyncio.get_running_loop()
        routine_due = loop.time() + self._routine_max_wait_s
        while True:
            if self._urgent:
                patient_id = next(iter(self._urgent))
                self._urgent_in_flight += 1
                return Turn(patient_id, self._urgent.pop(patient_id), urgent=True)
            if not self._routine:
                return None
            if self._urgent_in_flight == 0 or loop.time() >= routine_due:
                patient_id = next(iter(self._routine))
                return Turn(patient_id, self._routine.pop(patient_id), urgent=False)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(routine_due):
                    await self._changed.wait()

    def finished(self, turn: Turn) -> None:
        """`turn`'s evaluation ended (whatever its outcome): routine turns go on after the last urgent."""
        if turn.urgent:
            self._urgent_in_flight -= 1
            if self._urgent_in_flight == 0:
                self._changed.set()

    @property
    def urgent_in_flight(self) -> int:
        return self._urgent_in_flight

    @property
    def urgent_waiting(self) -> bool:
        return bool(self._urgent)

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)
