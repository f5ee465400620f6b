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


async def test_no_routine_evaluation_starts_while_an_urgent_one_is_in_flight() -> None:
    """While a level-2 hypo is being evaluated, routine patients wait their turn (they would share
    the interpreter with it); a second urgent patient does not wait, and routine work resumes when
    the last urgent evaluation ends."""
    queue = EvaluationQueue()
    queue.add([glucose_of("bg-1", 1, 120), glucose_of("bg-2", 1, 130), glucose_of("hypo-1", 1, 45)])
    first = await queue.next_turn()
    assert first is not None and (first.patient_id, first.urgent) == ("hypo-1", True)
    routine = asyncio.ensure_future(queue.next_turn())
    await asyncio.sleep(0.05)
    assert not routine.done()  # waits behind the urgent evaluation in flight
    queue.add([glucose_of("hypo-2", 1, 42)])
    second = await asyncio.wait_for(routine, 1)
    assert second is not None and (second.patient_id, second.urgent) == ("hypo-2", True)
    routine = asyncio.ensure_future(queue.next_turn())
    queue.finished(first)
    await asyncio.sleep(0.05)
    assert not routine.done()  # one urgent evaluation is still in flight
    queue.finished(second)
    third = await asyncio.wait_for(routine, 1)
    assert third is not None and (third.patient_id, third.urgent) == ("bg-1", False)


async def test_an_urgent_evaluation_that_fails_does_not_hold_up_routine_ones(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """An urgent patient's evaluation raising (a store fault) ends its turn: routine patients are
    still evaluated and their alerts reach the live stream."""
    evaluate = alert_engine.evaluate

    async def failing_for_the_urgent(
        patient_id: str, now: datetime, fresh: Sequence[AnyReading] = ()
    ) -> list[Any]:
        if patient_id == "urgent":
            raise RuntimeError("store fault")
        return await evaluate(patient_id, now, fresh)

    alert_engine.evaluate = failing_for_the_urgent  # type: ignore[method-assign]
    await evaluate("pt-1", START)  # known to the engine: its EU limits screen its readings
    routine = [glucose_reading("pt-1", START, 60, seq=1)]  # level-1 hypo: an alert, not urgent in EU
    reading_store.write_batch(routine)
    clock.now = START + timedelta(minutes=1)
    listener = alert_engine.threadsafe_listener(asyncio.get_running_loop())
    async with hub.subscribe("clinic-a") as sub:
        listener([glucose_of("urgent", 1, 40)])
        listener(routine)
        note = await sub.next(timeout_s=30)
    assert note is not None and note.event.patient_id == "pt-1"


async def test_routine_readings_are_delayed_never_starved_by_urgent_evaluations() -> None:
    """A routine patient waiting behind an urgent evaluation that does not end (a stream of urgent
    readings) gets its turn once it has waited the longest a routine turn waits."""
    queue = EvaluationQueue(routine_max_wait_s=0.3)
    queue.add([glucose_of("hypo-1", 1, 45), glucose_of("bg-1", 1, 120)])
    urgent = await queue.next_turn()
    assert urgent is not None and urgent.urgent
    routine = asyncio.ensure_future(queue.next_turn())
    await asyncio.sleep(0.1)
    assert not routine.done()
    turn = await asyncio.wait_for(routine, 5)  # the urgent one is still in flight
    assert turn is not None and (turn.patient_id, turn.urgent) == ("bg-1", False)
    assert queue.urgent_in_flight == 1
