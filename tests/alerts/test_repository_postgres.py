"""The SQL alert repository on PostgreSQL (production engine): the partial unique index keeps one
unresolved alert per (patient, rule) even when two evaluators race (ESC-1), a daily digest
recorded by two processes at once is kept once, and an undelivered webhook is kept byte for byte."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import DeliveryError
from alerts.channels.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, DeadLetter, WebhookChannel, verify
from alerts.lifecycle import InvalidTransition, Lifecycle
from alerts.model import Outcome, OutcomeStatus
from alerts.repository import SqlAlertRepository, SqlPatientDirectory, SqlWebhookDeadLetters
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.models import GuidelineProfile, PatientTargets
from tests.alerts.conftest import START, seed_clinic
from tests.alerts.test_channels import FAST, SECRET, _note, _Receiver
from tests.fixtures.postgres import postgres_database_url
from vitals.payload import AlertSeverity, AlertState

pytestmark = pytest.mark.postgres
__all__ = ["postgres_database_url"]


@pytest.fixture
def pg_sessions(postgres_database_url: str) -> Iterator[sessionmaker[Session]]:
    """A database of this test's own next to the session's (the seed ids would clash otherwise)."""
    name = f"vg_alerts_{uuid.uuid4().hex[:12]}"
    admin = create_clinic_engine(postgres_database_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_database_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade_to_head(url)
    engine = create_clinic_engine(url)
    sessions = session_factory(engine)
    seed_clinic(sessions)
    try:
        yield sessions
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _crisis(key: str) -> Outcome:
    return Outcome(
        rule_id="BP-CRIT-2",
        patient_id="pt-1",
        status=OutcomeStatus.FIRING,
        severity=AlertSeverity.URGENT,
        window_start=START,
        window_end=START,
        values={"systolic_mmhg": 184.0},
        reading_ids=(key,),
        episode_key=key,
    )


def test_racing_evaluators_cannot_open_two_alerts(pg_sessions: sessionmaker[Session]) -> None:
    a = Lifecycle(SqlAlertRepository(pg_sessions))
    b = Lifecycle(SqlAlertRepository(pg_sessions))
    [opened] = a.apply("clinic-a", [_crisis("r1")], START)
    # b evaluated before a committed: it believes nothing is open and tries to open its own alert
    b.repo.current = lambda patient_id, rule_id: None  # type: ignore[method-assign]
    b.repo.latest = lambda patient_id, rule_id: None  # type: ignore[method-assign]
    with pytest.raises(InvalidTransition):
        b.apply("clinic-a", [_crisis("r2")], START)
    repo = SqlAlertRepository(pg_sessions)
    assert [r.alert_id for r in repo.unresolved("clinic-a")] == [opened.record.alert_id]
    a.acknowledge(opened.record.alert_id, "dr-li", START)
    assert [e.event for e in repo.events(opened.record.alert_id)] == ["opened", "acknowledged"]
    assert repo.get(opened.record.alert_id).state is AlertState.ACKNOWLEDGED  # type: ignore[union-attr]


def test_directory_orders_doctor_then_staff_on_duty(pg_sessions: sessionmaker[Session]) -> None:
    ctx = SqlPatientDirectory(pg_sessions).context("pt-1")
    assert ctx is not None
    assert [r.user_id for r in ctx.care_team] == ["dr-li", "nurse-wang", "nurse-zhao"]
    assert ctx.profile.name.value == "eu" and ctx.targets.timezone == "UTC"


def test_directory_reads_the_doctors_targets(pg_sessions: sessionmaker[Session]) -> None:
    """Migration 0006's columns on PostgreSQL: insulin shortens DQ-01, the patient's zone wins."""
    with pg_sessions() as session:
        session.add(
            PatientTargets(
                patient_id="pt-1",
                guideline_profile=GuidelineProfile.CN,
                bp_goal_systolic_mmhg=130.0,
                bp_goal_diastolic_mmhg=80.0,
                on_insulin=True,
                timezone="Asia/Shanghai",
            )
        )
        session.commit()
    ctx = SqlPatientDirectory(pg_sessions).context("pt-1")
    assert ctx is not None
    params = ctx.parameters()
    assert (params.profile.name.value, params.goal_systolic_mmhg, params.goal_diastolic_mmhg) == (
        "cn",
        130,
        80,
    )
    assert params.titration is True and params.timezone == "Asia/Shanghai"


def test_a_digest_recorded_by_two_processes_at_once_is_kept_once(
    pg_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    import alerts.repository.alert_store as alert_store

    a, b = SqlAlertRepository(pg_sessions), SqlAlertRepository(pg_sessions)
    assert a.record_digest_sent("2026-03-02", "dr-li", START) is True
    # b looked before a committed: it believes the digest unrecorded and inserts its own row.
    looked = alert_store._digest_recorded
    calls: list[bool] = []

    def stale_first_look(session: Session, day: str, user_id: str) -> bool:
        calls.append(looked(session, day, user_id))
        return calls[-1] if len(calls) > 1 else False

    monkeypatch.setattr(alert_store, "_digest_recorded", stale_first_look)
    assert b.record_digest_sent("2026-03-02", "dr-li", START + timedelta(minutes=1)) is False
    assert calls == [True, True]  # the unique constraint refused b's row; the second look saw a's
    monkeypatch.undo()
    assert b.digests_sent("2026-03-02") == {"dr-li"}
    with pytest.raises(IntegrityError):  # not a repeat: no such user
        b.record_digest_sent("2026-03-02", "no-such-user", START)
    assert b.digests_sent("2026-03-02") == {"dr-li"}
    # Old records are forgotten by day (AlertEngine.send_digest keeps a quarter).
    assert a.record_digest_sent("2026-03-03", "dr-li", START + timedelta(days=1)) is True
    assert a.forget_digests_before("2026-03-03") == 1
    assert (b.digests_sent("2026-03-02"), b.digests_sent("2026-03-03")) == (set(), {"dr-li"})


async def test_a_webhook_that_keeps_failing_is_kept_with_the_exact_signed_body(
    pg_sessions: sessionmaker[Session],
) -> None:
    failing = _Receiver([503] * 10)
    try:
        channel = WebhookChannel([failing.url], SECRET, SqlWebhookDeadLetters(pg_sessions), policy=FAST)
        with pytest.raises(DeliveryError, match=r"dead-lettered for event ev-pg$"):
            await channel.deliver(_note("ev-pg"))
    finally:
        failing.close()
    headers, sent_body = failing.requests[-1]
    bind = pg_sessions.kw["bind"]
    restarted = create_clinic_engine(bind.url.render_as_string(hide_password=False))  # a new process
    try:
        [letter] = SqlWebhookDeadLetters(session_factory(restarted)).recent()
    finally:
        restarted.dispose()
    assert (letter.url, letter.event_id, letter.attempts, letter.last_error) == (
        failing.url,
        "ev-pg",
        FAST.attempts,
        "HTTP 503",
    )
    assert letter.body == sent_body and verify(SECRET, letter.body, headers[SIGNATURE_HEADER])
    assert letter.at.tzinfo is UTC and datetime.now(UTC) - letter.at < timedelta(minutes=1)
    older = DeadLetter(failing.url, "ev-older", b"{}", 1, "HTTP 400", letter.at - timedelta(hours=1))
    SqlWebhookDeadLetters(pg_sessions).add(older)
    assert [d.event_id for d in SqlWebhookDeadLetters(pg_sessions).recent()] == ["ev-pg", "ev-older"]


async def test_a_kept_webhook_is_re_sent_by_id_and_no_longer_kept_once_taken(
    pg_sessions: sessionmaker[Session],
) -> None:
    # The bookkeeping behind `vitalgate alerts webhooks resend|drop`, on PostgreSQL.
    sink = SqlWebhookDeadLetters(pg_sessions)
    at = datetime.now(UTC)
    for event_id in ("ev-a", "ev-b", "ev-c"):
        sink.add(DeadLetter("http://127.0.0.1:9/hook", event_id, b'{"e":1}', 5, "HTTP 500", at))
    kept = sink.kept(limit=None)
    ids = {k.letter.event_id: k.letter_id for k in kept}
    receiver = _Receiver([503])
    try:
        channel = WebhookChannel([receiver.url], SECRET, sink, policy=FAST)
        [a] = sink.kept(letter_ids=[ids["ev-a"]])
        outcome = await channel.redeliver(replace(a.letter, url=receiver.url))
    finally:
        receiver.close()
    assert outcome.delivered and outcome.attempts == 2  # 503 once, then taken
    assert [headers[EVENT_ID_HEADER] for headers, _ in receiver.requests] == ["ev-a", "ev-a"]
    sink.delivered(ids["ev-a"])
    sink.failed_again(ids["ev-b"], 2, "ConnectError", at + timedelta(minutes=5))
    [b] = sink.kept(letter_ids=[ids["ev-b"]])
    assert (b.letter.attempts, b.letter.last_error, b.letter.at) == (
        7,
        "ConnectError",
        at + timedelta(minutes=5),
    )
    assert sink.drop([ids["ev-c"], ids["ev-a"]]) == 1
    assert [k.letter.event_id for k in sink.kept(limit=None)] == ["ev-b"]
    # `vitalgate alerts webhooks import` run twice: a letter already kept is not kept again.
    fresh = DeadLetter("http://127.0.0.1:9/hook", "ev-d", b'{"e":2}', 1, "HTTP 502", at)
    assert sink.add_missing([b.letter, fresh]) == 1
    assert sink.add_missing([b.letter, fresh]) == 0
    assert sorted(k.letter.event_id for k in sink.kept(limit=None)) == ["ev-b", "ev-d"]


def _hypo(key: str, at: datetime) -> Outcome:
    return Outcome(
        rule_id="GLU-HYPO-2",
        patient_id="pt-1",
        status=OutcomeStatus.FIRING,
        severity=AlertSeverity.URGENT,
        window_start=at,
        window_end=at,
        values={"glucose_mg_dl": 48.0},
        reading_ids=(key,),
        episode_key=key,
    )


def test_an_urgent_alert_resolved_unseen_waits_for_signoff_on_postgresql(
    pg_sessions: sessionmaker[Session],
) -> None:
    """Nothing urgent disappears unseen, on the production engine: listed until a clinician signs off."""
    from alerts.repository import InboxView

    life = Lifecycle(SqlAlertRepository(pg_sessions))
    [opened] = life.apply("clinic-a", [_hypo("r1", START)], START)
    life.apply(
        "clinic-a",
        [Outcome(rule_id="GLU-HYPO-2", patient_id="pt-1", status=OutcomeStatus.CLEAR)],
        START + timedelta(minutes=1),
    )
    # a crisis acknowledged by the nurse before it cleared needs no sign-off
    [crisis] = life.apply("clinic-a", [_crisis("r2")], START)
    life.acknowledge(crisis.record.alert_id, "nurse-wang", START + timedelta(minutes=2))
    life.apply(
        "clinic-a",
        [Outcome(rule_id="BP-CRIT-2", patient_id="pt-1", status=OutcomeStatus.CLEAR)],
        START + timedelta(minutes=3),
    )

    repo = SqlAlertRepository(pg_sessions)
    assert [a.alert_id for a in repo.needing_signoff("clinic-a")] == [opened.record.alert_id]
    now = START + timedelta(hours=1)
    [waiting] = repo.inbox(
        "clinic-a", "nurse-zhao", all_patients=False, view=InboxView.NEEDS_SIGNOFF, now=now
    )
    assert (waiting.record.alert_id, waiting.patient_given_name, waiting.patient_family_name) == (
        opened.record.alert_id,
        "Mei",
        "Zhang",
    )
    assert repo.inbox("clinic-a", "dr-chen", all_patients=False, view=InboxView.NEEDS_SIGNOFF, now=now) == []
    recent = repo.inbox("clinic-a", "dr-li", all_patients=False, view=InboxView.RECENT, now=now)
    assert {e.record.rule_id for e in recent} == {"GLU-HYPO-2", "BP-CRIT-2"}

    life.sign_off(opened.record.alert_id, "nurse-zhao", "called: fine", now)
    stored = repo.get(opened.record.alert_id)
    assert stored is not None
    assert (stored.needs_signoff, stored.signed_off_by, stored.signed_off_at) == (False, "nurse-zhao", now)
    assert repo.needing_signoff("clinic-a") == []
    assert repo.inbox("clinic-a", "dr-li", all_patients=False, view=InboxView.NEEDS_SIGNOFF, now=now) == []
    assert [(e.event, e.actor) for e in repo.events(opened.record.alert_id)][-1] == (
        "signed_off",
        "nurse-zhao",
    )
    assert repo.display_names(["nurse-zhao", "system", "nobody"]) == {"nurse-zhao": "nurse-zhao"}
