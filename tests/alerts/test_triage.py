"""The order of evaluation: a reading that may be urgent is evaluated before routine ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.profiles import PatientTargets, ProfileName, parameters, profile
from alerts.triage import EvaluationQueue, may_be_urgent
from storage.readings.protocol import AnyReading
from storage.readings.sqlite import SqliteReadingStore
from testbed.factories import cuff, glucose_meter
from tests.alerts.conftest import START, Clock, glucose_reading
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import BloodPressureReading, GlucoseReading

T0 = datetime(2026, 3, 2, 8, 0)


def glucose_of(patient_id: str, n: int, value: float, unit: str = "mg/dL") -> GlucoseReading:
    device = glucose_meter(f"GL-{patient_id}")
    at = T0 + timedelta(minutes=n)
    return GlucoseReading(
        reading_id=glucose_reading_id(device, n, at),
        device=device,
        patient_id=patient_id,
        measured_at=at.replace(tzinfo=UTC),
        device_time=at,
        sequence_number=n,
        unit=unit,  # type: ignore[arg-type]
        glucose=value,
    )


def pressure_of(patient_id: str, n: int, systolic: float, diastolic: float) -> BloodPressureReading:
    device = cuff(f"BP-{patient_id}")
    at = T0 + timedelta(minutes=n)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            device, at, 1, systolic=systolic, diastolic=diastolic, mean_arterial=None, pulse_bpm=70
        ),
        device=device,
        patient_id=patient_id,
        measured_at=at.replace(tzinfo=UTC),
        device_time=at,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70,
        user_id=1,
    )


def pulse_of(patient_id: str, n: int, pulse: float) -> BloodPressureReading:
    reading = pressure_of(patient_id, n, 128, 82)
    return BloodPressureReading.model_validate({**reading.model_dump(), "pulse_bpm": pulse})


@pytest.mark.parametrize(
    ("reading", "urgent"),
    [
        (glucose_of("p", 1, 53.9), True),  # level 2 hypoglycaemia under every profile
        (glucose_of("p", 1, 3.9, "mmol/L"), True),  # CN: <= 3.9 mmol/L is urgent
        (glucose_of("p", 1, 4.2, "mmol/L"), False),
        (glucose_of("p", 1, 140), False),
        (glucose_of("p", 1, 300), True),  # GLU-HIGH-2, urgent once confirmed
        (glucose_of("p", 1, 299), False),
        (pressure_of("p", 1, 180, 90), True),  # crisis systolic
        (pressure_of("p", 1, 150, 110), True),  # CN crisis diastolic
        (pressure_of("p", 1, 179, 109), False),
        (pulse_of("p", 1, 38), True),  # HR-LOW's urgent limit
        (pulse_of("p", 1, 125), True),  # HR-HIGH's urgent limit
        (pulse_of("p", 1, 72), False),
    ],
)
def test_a_reading_at_an_urgent_limit_under_some_profile_is_screened_as_such(
    reading: AnyReading, urgent: bool
) -> None:
    """Before a patient is known, the screen flags every reading an urgent single-reading rule could
    fire on under any profile's defaults, and no in-range one."""
    assert may_be_urgent(reading) is urgent


def test_a_patients_own_hypo_limit_screens_its_next_readings() -> None:
    """A CN patient whose doctor set level 1 at < 80 mg/dL (urgent in CN) has a 75 mg/dL reading
    evaluated first once the engine knows the patient; a US patient's 75 mg/dL waits its turn."""
    queue = EvaluationQueue()
    queue.know("cn", parameters(profile(ProfileName.CN), PatientTargets(hypo1_mg_dl=80.0)))
    queue.know("us", parameters(profile(ProfileName.US), PatientTargets(hypo1_mg_dl=80.0)))
    queue.add([glucose_of("us", 1, 75.0), glucose_of("cn", 1, 75.0)])
    assert queue.urgent_waiting
    assert [queue.pop(), queue.pop()] == [
        ("cn", [glucose_of("cn", 1, 75.0)]),
        ("us", [glucose_of("us", 1, 75.0)]),
    ]


def test_a_level_2_hypo_is_evaluated_before_a_queue_of_routine_readings() -> None:
    """A patient with a level-2 hypo jumps a backlog of 40 patients, with all its waiting readings."""
    queue = EvaluationQueue()
    queue.add([glucose_of(f"bg-{i}", 1, 120) for i in range(40)])
    queue.add([glucose_of("urgent", 1, 110)])  # a routine reading first: waits among the others
    queue.add([glucose_of(f"bg-{i}", 2, 125) for i in range(40)] + [glucose_of("urgent", 2, 45)])
    first = queue.pop()
    assert first is not None
    patient_id, readings = first
    assert patient_id == "urgent"
    assert [r.sequence_number for r in readings if isinstance(r, GlucoseReading)] == [1, 2]
    assert not queue.urgent_waiting
    order = []
    while (turn := queue.pop()) is not None:
        order.append(turn[0])
        assert len(turn[1]) == 2  # each routine patient's two readings in one turn
    assert order == [f"bg-{i}" for i in range(40)]  # the others oldest first, each once
    assert len(queue) == 0


async def test_the_engine_evaluates_a_patient_with_an_urgent_reading_before_a_backlog(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """With 30 patients' routine readings waiting, a level-2 hypo committed after them is evaluated
    first, and its alert reaches the live stream."""
    evaluated: list[str] = []
    evaluate = alert_engine.evaluate

    async def noting_order(patient_id: str, now: datetime, fresh: Sequence[AnyReading] = ()) -> list[Any]:
        evaluated.append(patient_id)
        return await evaluate(patient_id, now, fresh)

    alert_engine.evaluate = noting_order  # type: ignore[method-assign]
    backlog = [[glucose_of(f"bg-{i}", 1, 120)] for i in range(30)]
    hypo = [glucose_reading("pt-1", START, 45, seq=1)]
    reading_store.write_batch(hypo)
    clock.now = START + timedelta(minutes=1)
    listener = alert_engine.threadsafe_listener(asyncio.get_running_loop())
    async with hub.subscribe("clinic-a") as sub:
        for batch in [*backlog, hypo]:  # all noted before the loop runs an evaluation
            listener(batch)
        note = await sub.next(timeout_s=30)
    assert note is not None and (note.event.rule_id, note.event.event) == ("GLU-HYPO-2", "opened")
    assert evaluated[0] == "pt-1"
