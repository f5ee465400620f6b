"""The engine on real stores: evaluation per committed batch, idempotent on redelivery, routing to
the family doctor then staff on duty, escalation, and the vectorised sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from alerts.channels.base import Notification
from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.model import PatientReport, ReportKind
from storage.readings.protocol import AnyReading
from storage.readings.sqlite import SqliteReadingStore
from tests.alerts.conftest import START, Clock, bp_reading, glucose_reading
from vitals.payload import AlertSeverity, AlertState


async def _drain(sub_queue: asyncio.Queue[Notification | None]) -> list[Notification]:
    out = []
    while not sub_queue.empty():
        item = sub_queue.get_nowait()
        assert item is not None
        out.append(item)
    return out


async def test_confirmed_crisis_opens_one_urgent_alert_and_redelivery_changes_nothing(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    # BP-CRIT-2: 2 of 2 readings >= 180 within 15 min [1][4][17].
    batch = [bp_reading("pt-1", START, 186, 100), bp_reading("pt-1", START + timedelta(minutes=3), 184, 98)]
    reading_store.write_batch(batch)
    clock.now = START + timedelta(minutes=4)
    async with hub.subscribe("clinic-a") as sub:
        await alert_engine.on_readings_committed(batch)
        first = await _drain(sub.queue)
        # the same batch again (ingest redelivery after a crash): no alert, no notification
        reading_store.write_batch(batch)
        again = await alert_engine.on_readings_committed(batch)
        assert again == []
        assert await _drain(sub.queue) == []
    opened = [n for n in first if n.event.event == "opened"]
    assert [n.event.rule_id for n in opened] == ["BP-CRIT-2"]
    crit = opened[0]
    assert crit.event.severity is AlertSeverity.URGENT and crit.push
    assert crit.link == f"https://clinic.test/alerts/{crit.event.alert_id}"
    assert [r.user_id for r in crit.recipients] == ["dr-li"]  # family doctor first
    body = str(crit.body())
    assert "Zhang" not in body and "Mei" not in body  # opaque ids only
    unresolved = alert_engine.repo.unresolved("clinic-a")
    assert {a.rule_id for a in unresolved} == {"BP-CRIT-2"}


async def test_unacknowledged_urgent_escalates_to_the_next_on_the_care_team(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    batch = [glucose_reading("pt-1", START, 48, 1)]  # GLU-HYPO-2 < 54 mg/dL urgent [30]
    reading_store.write_batch(batch)
    await alert_engine.on_readings_committed(batch)
    async with hub.subscribe("clinic-a") as sub:
        clock.now = START + timedelta(minutes=29)
        await alert_engine.sweep()
        assert [n for n in await _drain(sub.queue) if n.event.event == "escalated"] == []
        clock.now = START + timedelta(minutes=30)  # ESC-2: 30 min unacknowledged [58]
        await alert_engine.sweep()
        [esc] = [n for n in await _drain(sub.queue) if n.event.event == "escalated"]
    assert [r.user_id for r in esc.recipients] == ["dr-li", "nurse-wang"]
    assert esc.event.state is AlertState.ESCALATED
    # acknowledged by the nurse: one state for all, and no further escalation
    rec = await alert_engine.acknowledge(esc.event.alert_id, "nurse-wang")
    assert rec.state is AlertState.ACKNOWLEDGED and rec.acknowledged_by == "nurse-wang"
    clock.now = START + timedelta(hours=3)
    report = await alert_engine.sweep()
    assert all(
        a.state is AlertState.ACKNOWLEDGED
        for a in alert_engine.repo.unresolved("clinic-a")
        if a.rule_id == "GLU-HYPO-2"
    )
    assert report.patients == 3


async def test_reported_symptom_turns_crisis_into_emergency(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    batch = [bp_reading("pt-1", START, 190, 100)]
    reading_store.write_batch(batch)
    await alert_engine.on_readings_committed(batch)
    clock.now = START + timedelta(minutes=10)
    changes = await alert_engine.add_report(
        PatientReport(
            patient_id="pt-1",
            report_id="rep-1",
            reported_at=START + timedelta(minutes=8),
            kind=ReportKind.SYMPTOMS,
            symptoms=frozenset({"chest_pain"}),
        )
    )
    assert [c.record.rule_id for c in changes if c.event.event == "opened"] == ["BP-CRIT-3"]
    # the same report again is ignored
    assert (
        await alert_engine.add_report(
            PatientReport(
                patient_id="pt-1",
                report_id="rep-1",
                reported_at=START + timedelta(minutes=8),
                kind=ReportKind.SYMPTOMS,
                symptoms=frozenset({"chest_pain"}),
            )
        )
        == []
    )


async def test_sweep_raises_stale_data_and_clears_it_when_readings_return(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    first = [bp_reading("pt-2", START, 128, 80)]
    reading_store.write_batch(first)
    await alert_engine.on_readings_committed(first)
    clock.now = START + timedelta(days=7, minutes=5)  # DQ-01: stable patient, 7 days ([58] DEFAULT)
    await alert_engine.sweep()
    stale = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "DQ-01"]
    assert [a.patient_id for a in stale] == ["pt-2"] and stale[0].severity is AlertSeverity.INFO
    back = [bp_reading("pt-2", clock.now, 126, 78)]
    reading_store.write_batch(back)
    await alert_engine.on_readings_committed(back)
    clock.advance(timedelta(hours=1))
    await alert_engine.sweep()
    assert not [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "DQ-01"]


async def test_daily_digest_lists_open_warnings_for_the_family_doctor(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    # ESC-2: warnings batched into a daily digest; urgent alerts are pushed at once instead.
    import threading
    from typing import Any

    from aiosmtpd.controller import Controller

    from alerts.channels.email import EmailChannel, SmtpConfig
    from vitalgate.mosquitto import free_port

    batch: list[AnyReading] = [
        bp_reading("pt-1", START, 182, 100),
        glucose_reading("pt-1", START + timedelta(hours=1), 48, 2),
    ]
    reading_store.write_batch(batch)
    clock.now = START + timedelta(hours=1, minutes=1)
    await alert_engine.on_readings_committed(batch)

    class Inbox:
        def __init__(self) -> None:
            self.envelopes: list[Any] = []
            self.got = threading.Event()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.envelopes.append(envelope)
            self.got.set()
            return "250 OK"

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sent = await alert_engine.send_digest(EmailChannel(SmtpConfig("127.0.0.1", port)))
        assert await asyncio.to_thread(inbox.got.wait, 10)
    finally:
        controller.stop()
    assert sent == 1
    [env] = inbox.envelopes
    assert env.rcpt_tos == ["dr-li@clinic.test"]
    text = env.content.decode()
    assert "BP-CRIT-1" in text and "GLU-HYPO-2" not in text  # the urgent one is not batched
    assert "Zhang" not in text


async def test_ingest_listener_from_another_thread_reaches_the_live_stream(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    # Ingest calls its listeners on its worker thread (ingest.consumer.ReadingsListener).
    import threading

    batch: list[AnyReading] = [glucose_reading("pt-1", START, 50, 7)]
    reading_store.write_batch(batch)
    listener = alert_engine.threadsafe_listener(asyncio.get_running_loop())
    async with hub.subscribe("clinic-a") as sub:
        worker = threading.Thread(target=listener, args=(batch,))
        worker.start()
        note = await sub.next(timeout_s=10)
        await asyncio.to_thread(worker.join, 10)
    assert note is not None and note.event.rule_id == "GLU-HYPO-2" and note.event.event == "opened"


async def test_periodic_sweep_loop_stops_when_asked(alert_engine: AlertEngine, clock: Clock) -> None:
    from alerts.periodic import run_sweeps

    stop = asyncio.Event()
    task = asyncio.create_task(run_sweeps(alert_engine, interval_s=3600, stop=stop))
    stop.set()
    async with asyncio.timeout(10):
        await task
    assert task.exception() is None


async def test_readings_stored_behind_the_engines_back_are_evaluated_on_the_next_pass(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    # A standalone ingest replica stored a confirmed crisis (BP-CRIT-2 [1][4][17]), or ingest crashed
    # between its commit and the listener: no one called on_readings_committed.
    batch = [bp_reading("pt-1", START, 186, 100), bp_reading("pt-1", START + timedelta(minutes=3), 184, 98)]
    reading_store.write_batch(batch)
    clock.now = START + timedelta(minutes=4)
    assert await alert_engine.evaluate_recent(since=START + timedelta(minutes=5)) == 0  # nothing newer
    assert await alert_engine.evaluate_recent(since=START - timedelta(minutes=5)) == 1
    unresolved = {a.rule_id: a.severity for a in alert_engine.repo.unresolved(None)}
    assert unresolved["BP-CRIT-2"] is AlertSeverity.URGENT
    # A second pass over the same readings opens nothing new.
    assert await alert_engine.evaluate_recent(since=START - timedelta(minutes=5)) == 1
    assert len([a for a in alert_engine.repo.unresolved(None) if a.rule_id == "BP-CRIT-2"]) == 1


async def test_an_urgent_hypo_that_clears_unseen_stays_for_signoff_and_the_live_stream_says_so(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """A level-2 hypo that closes by itself is not lost: sign-off list, live events, stored sign-off."""
    from alerts.lifecycle import InvalidTransition
    from alerts.repository import SqlAlertRepository

    low = [glucose_reading("pt-1", START, 48, 1)]  # GLU-HYPO-2 < 54 mg/dL urgent [30]
    back = [
        glucose_reading("pt-1", START + timedelta(minutes=20), 110, 2),
        glucose_reading("pt-1", START + timedelta(minutes=40), 118, 3),
    ]  # 2 consecutive in range: ESC-1 auto-resolve
    async with hub.subscribe("clinic-a") as sub:
        reading_store.write_batch(low)
        clock.now = START + timedelta(minutes=1)
        await alert_engine.on_readings_committed(low)
        reading_store.write_batch(back)
        clock.now = START + timedelta(minutes=41)
        await alert_engine.on_readings_committed(back)
        seen = await _drain(sub.queue)
        hypo = [n for n in seen if n.event.rule_id == "GLU-HYPO-2"]
        assert [(n.event.event, n.body()["needs_signoff"]) for n in hypo] == [
            ("opened", False),
            ("auto_resolved", True),
        ]
        alert_id = hypo[0].event.alert_id

        # Another process (the API) reads the clinic database: the alert waits for sign-off there.
        elsewhere = SqlAlertRepository(alert_engine.repo.sessions)  # type: ignore[attr-defined]
        assert [a.alert_id for a in elsewhere.needing_signoff("clinic-a")] == [alert_id]
        # the hypo itself is closed; the regimen review for a level-2 hypo in 14 days stays open
        assert [a.rule_id for a in elsewhere.unresolved("clinic-a")] == ["GLU-HYPO-REC"]

        clock.now = START + timedelta(hours=8)  # the nurse starting her shift
        rec = await alert_engine.sign_off(alert_id, "nurse-wang", "phoned: ate, 6.5 mmol/L now")
        assert rec.signed_off_by == "nurse-wang" and not rec.needs_signoff
        [signed] = await asyncio.wait_for(_next_events(sub.queue, 1), 10)
        assert (signed.event.alert_id, signed.event.event, signed.event.actor) == (
            alert_id,
            "signed_off",
            "nurse-wang",
        )
        assert signed.body()["needs_signoff"] is False and not signed.push

    stored = elsewhere.get(alert_id)
    assert stored is not None
    assert (stored.needs_signoff, stored.signed_off_by, stored.signed_off_at) == (
        False,
        "nurse-wang",
        START + timedelta(hours=8),
    )
    assert elsewhere.needing_signoff("clinic-a") == []
    last = elsewhere.events(alert_id)[-1]
    assert (last.event, last.actor, last.details) == (
        "signed_off",
        "nurse-wang",
        {"note": "phoned: ate, 6.5 mmol/L now"},
    )
    with pytest.raises(InvalidTransition):
        await alert_engine.sign_off(alert_id, "dr-li")


async def _next_events(queue: asyncio.Queue[Notification | None], count: int) -> list[Notification]:
    """The next `count` notifications (the sign-off is routed in a task of its own)."""
    out: list[Notification] = []
    while len(out) < count:
        item = await queue.get()
        assert item is not None
        out.append(item)
    return out


async def test_a_backlog_of_batches_is_evaluated_once_per_patient_with_every_reading(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """Ingest replaying a backlog (many batches of one patient) costs one evaluation, on all of them."""
    from typing import Any

    class CountedReads:
        def __init__(self) -> None:
            self.history_reads = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(reading_store, name)

        def history_columns(self, *args: Any, **kwargs: Any) -> Any:
            self.history_reads += 1
            return reading_store.history_columns(*args, **kwargs)

    reads = CountedReads()
    alert_engine.readings = reads
    batches = [[bp_reading("pt-1", START + timedelta(minutes=i), 128, 80)] for i in range(40)]
    batches.append([bp_reading("pt-1", START + timedelta(minutes=41), 186, 100)])
    batches.append([bp_reading("pt-1", START + timedelta(minutes=43), 184, 98)])  # BP-CRIT-2 [1][4][17]
    for batch in batches:
        reading_store.write_batch(batch)
    clock.now = START + timedelta(minutes=44)
    listener = alert_engine.threadsafe_listener(asyncio.get_running_loop())
    async with hub.subscribe("clinic-a") as sub:
        for batch in batches:  # all noted before the loop runs an evaluation
            listener(batch)
        note = await sub.next(timeout_s=30)
    assert note is not None and (note.event.rule_id, note.event.event) == ("BP-CRIT-2", "opened")
    assert reads.history_reads == 1
    [crit] = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "BP-CRIT-2"]
    assert crit.severity is AlertSeverity.URGENT


async def test_a_level_2_hypo_and_its_recovery_in_one_backlog_open_the_urgent_alert_once(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """A gateway's backlog holding a whole level-2 hypo episode still tells the care team, once."""
    from alerts.repository import SqlAlertRepository

    backlog = [
        glucose_reading("pt-1", START, 45, 1),  # GLU-HYPO-2 < 54 mg/dL urgent [30]
        glucose_reading("pt-1", START + timedelta(minutes=20), 112, 2),
        glucose_reading("pt-1", START + timedelta(minutes=40), 120, 3),  # cleared: ESC-1
    ]
    reading_store.write_batch(backlog)
    clock.now = START + timedelta(hours=6)  # the gateway came back after an outage
    async with hub.subscribe("clinic-a") as sub:
        await alert_engine.on_readings_committed(backlog)
        await alert_engine.on_readings_committed(backlog)  # delivered again: nothing new
        seen = [n for n in await _drain(sub.queue) if n.event.rule_id == "GLU-HYPO-2"]
    assert [(n.event.event, n.event.severity, n.push) for n in seen] == [
        ("opened", AlertSeverity.URGENT, True),
        ("auto_resolved", AlertSeverity.URGENT, False),
    ]
    repo = SqlAlertRepository(alert_engine.repo.sessions)  # type: ignore[attr-defined]
    [waiting] = repo.needing_signoff("clinic-a")
    assert (waiting.alert_id, waiting.trigger_values["reading_ids"]) == (
        seen[0].event.alert_id,
        [backlog[0].reading_id],
    )


async def test_an_episode_in_a_backlog_joins_the_alert_already_open_for_the_rule(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, hub: EventHub, clock: Clock
) -> None:
    """A backfilled hypo that ended goes onto the open alert of the current one, raising it to urgent."""
    current = [glucose_reading("pt-1", START + timedelta(hours=5), 62, 10)]  # GLU-HYPO-1 level 1 [30]
    reading_store.write_batch(current)
    clock.now = START + timedelta(hours=5, minutes=1)
    await alert_engine.on_readings_committed(current)
    [level1] = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "GLU-HYPO-1"]

    backfill = [  # measured before it, delivered after it: a second meter's backlog
        glucose_reading("pt-1", START, 60, 1),
        glucose_reading("pt-1", START + timedelta(minutes=20), 110, 2),
        glucose_reading("pt-1", START + timedelta(minutes=40), 118, 3),
    ]
    reading_store.write_batch(backfill)
    clock.now = START + timedelta(hours=5, minutes=2)
    await alert_engine.on_readings_committed(backfill)
    open_now = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "GLU-HYPO-1"]
    assert [a.alert_id for a in open_now] == [level1.alert_id]  # still one, still open
    events = [e.event for e in alert_engine.repo.events(level1.alert_id)]
    assert events[0] == "opened" and "evidence_added" in events


async def test_a_reading_from_a_meter_whose_clock_runs_fast_keeps_its_alert_open(
    alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    """A hypo dated minutes ahead of the clinic's clock stays alerted when older readings arrive after it."""
    clock.now = START + timedelta(hours=1)
    ahead = [glucose_reading("pt-1", clock.now + timedelta(minutes=5), 45, 7)]  # GLU-HYPO-2 [30]
    reading_store.write_batch(ahead)
    await alert_engine.on_readings_committed(ahead)
    [hypo] = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "GLU-HYPO-2"]

    older = [  # another meter's backlog, measured before the hypo
        glucose_reading("pt-1", START + timedelta(minutes=20), 110, 1),
        glucose_reading("pt-1", START + timedelta(minutes=30), 115, 2),
    ]
    reading_store.write_batch(older)
    clock.now += timedelta(seconds=30)
    await alert_engine.on_readings_committed(older)
    still = [a for a in alert_engine.repo.unresolved("clinic-a") if a.rule_id == "GLU-HYPO-2"]
    assert [a.alert_id for a in still] == [hypo.alert_id]
    assert [e.event for e in alert_engine.repo.events(hypo.alert_id)] == ["opened"]
