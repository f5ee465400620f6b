"""The daily digest is sent to each family doctor once a day, also across restarts.

Real parts: the clinic database migrated by Alembic (SQLite file; `digest_deliveries` on PostgreSQL
in test_repository_postgres.py), aiosmtpd as the mail server, stdlib smtplib as the client. A
restart is a new SQLAlchemy engine and a new `AlertEngine` on the same database file: only the
database remembers what was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import DeliveryError, RetryPolicy
from alerts.channels.email import EmailChannel, SmtpConfig
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.database import create_clinic_engine, session_factory
from storage.clinic.models import DigestDelivery
from storage.readings.protocol import AnyReading
from storage.readings.sqlite import SqliteReadingStore
from tests.alerts.conftest import START, Clock, bp_reading
from vitalgate.mosquitto import free_port

ONE_ATTEMPT = RetryPolicy(attempts=1)


class _Inbox:
    """Takes every e-mail except to the mailboxes in `full` (452: insufficient storage, transient)."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.full: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.full:
            return "452 4.2.2 Mailbox full"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def received(self) -> list[tuple[str, str]]:
        """(recipient, subject) of every e-mail taken, in order."""
        out: list[tuple[str, str]] = []
        for env in self.envelopes:
            subject = next(line for line in env.content.decode().splitlines() if line.startswith("Subject: "))
            out.extend((rcpt, subject.removeprefix("Subject: ")) for rcpt in env.rcpt_tos)
        return out


@asynccontextmanager
async def _mail_server(inbox: _Inbox) -> AsyncIterator[EmailChannel]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield EmailChannel(SmtpConfig("127.0.0.1", port, timeout_s=5), ONE_ATTEMPT)
    finally:
        controller.stop()


@contextmanager
def _restarted(
    clinic_sessions: sessionmaker[Session], reading_store: SqliteReadingStore, clock: Clock
) -> Iterator[AlertEngine]:
    """A new clinic process on the same database: its own SQLAlchemy engine and alert engine."""
    bind = clinic_sessions.kw["bind"]
    engine = create_clinic_engine(bind.url.render_as_string(hide_password=False))
    sessions = session_factory(engine)
    try:
        yield AlertEngine(
            reading_store,
            SqlAlertRepository(sessions),
            SqlPatientDirectory(sessions),
            Router(base_url="https://clinic.test"),
            clock=clock,
        )
    finally:
        engine.dispose()


def _deliveries(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.scalars(
            select(DigestDelivery).order_by(DigestDelivery.digest_day, DigestDelivery.user_id)
        )
        return [(r.digest_day, r.user_id) for r in rows]


async def _warnings_for(
    engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock, *patient_ids: str
) -> None:
    """One BP-CRIT-1 warning (one reading >= 180 mmHg, unconfirmed) per patient: digest material."""
    batch: list[AnyReading] = [
        bp_reading(pid, START + timedelta(minutes=i), 182 + i, 100) for i, pid in enumerate(patient_ids)
    ]
    reading_store.write_batch(batch)
    clock.now = START + timedelta(minutes=len(batch) + 1)
    await engine.on_readings_committed(batch)


async def test_a_restart_the_same_day_sends_no_second_digest_and_the_next_day_sends_again(
    alert_engine: AlertEngine,
    clinic_sessions: sessionmaker[Session],
    reading_store: SqliteReadingStore,
    clock: Clock,
) -> None:
    await _warnings_for(alert_engine, reading_store, clock, "pt-1")
    inbox = _Inbox()
    async with _mail_server(inbox) as channel:
        assert await alert_engine.send_digest(channel) == 1
        with _restarted(clinic_sessions, reading_store, clock) as restarted:
            assert await restarted.send_digest(channel) == 0  # the same day: already sent
            clock.advance(timedelta(days=1))
            assert await restarted.send_digest(channel) == 1  # the alert is still open the next day
            assert await restarted.send_digest(channel) == 0
    assert inbox.received() == [
        ("dr-li@clinic.test", "[vitalgate] daily digest 2026-03-02: 1 open alert(s)"),
        ("dr-li@clinic.test", "[vitalgate] daily digest 2026-03-03: 1 open alert(s)"),
    ]
    # The doctor is recorded by user id: the table holds no e-mail address.
    assert _deliveries(clinic_sessions) == [("2026-03-02", "dr-li"), ("2026-03-03", "dr-li")]


async def test_after_a_partial_failure_only_the_doctor_still_owed_a_digest_gets_one_across_restarts(
    alert_engine: AlertEngine,
    clinic_sessions: sessionmaker[Session],
    reading_store: SqliteReadingStore,
    clock: Clock,
) -> None:
    await _warnings_for(alert_engine, reading_store, clock, "pt-1", "pt-2")  # dr-li, dr-chen
    inbox = _Inbox()
    inbox.full.add("dr-chen@clinic.test")
    async with _mail_server(inbox) as channel:
        with pytest.raises(DeliveryError, match=r"1 of 2 digest e-mail\(s\) failed; 1 sent"):
            await alert_engine.send_digest(channel)
        assert _deliveries(clinic_sessions) == [("2026-03-02", "dr-li")]
        # The retry in a new process: dr-li is not sent a second one, dr-chen still fails.
        with (
            _restarted(clinic_sessions, reading_store, clock) as restarted,
            pytest.raises(DeliveryError, match=r"1 of 2 digest e-mail\(s\) failed; 0 sent"),
        ):
            await restarted.send_digest(channel)
        inbox.full.clear()
        with _restarted(clinic_sessions, reading_store, clock) as restarted:
            assert await restarted.send_digest(channel) == 1
            assert await restarted.send_digest(channel) == 0
        assert await alert_engine.send_digest(channel) == 0  # the first process learns it too
    assert [rcpt for rcpt, _subject in inbox.received()] == ["dr-li@clinic.test", "dr-chen@clinic.test"]
    assert _deliveries(clinic_sessions) == [("2026-03-02", "dr-chen"), ("2026-03-02", "dr-li")]


def test_recording_a_digest_twice_is_not_an_error(clinic_sessions: sessionmaker[Session]) -> None:
    first, second = SqlAlertRepository(clinic_sessions), SqlAlertRepository(clinic_sessions)
    assert first.record_digest_sent("2026-03-02", "dr-li", START) is True
    assert second.record_digest_sent("2026-03-02", "dr-li", START + timedelta(minutes=5)) is False
    assert first.record_digest_sent("2026-03-03", "dr-li", START + timedelta(days=1)) is True
    assert second.digests_sent("2026-03-02") == {"dr-li"}
    assert second.digests_sent("2026-03-04") == set()
    with clinic_sessions() as session:
        [row] = session.scalars(select(DigestDelivery).where(DigestDelivery.digest_day == "2026-03-02"))
        assert row.sent_at == START  # the first record stands


def test_a_digest_for_an_unknown_user_is_refused_not_taken_for_a_repeat(
    clinic_sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(IntegrityError):
        SqlAlertRepository(clinic_sessions).record_digest_sent("2026-03-02", "no-such-user", START)
    assert _deliveries(clinic_sessions) == []


async def test_digest_records_are_kept_for_a_quarter_then_forgotten(
    alert_engine: AlertEngine,
    clinic_sessions: sessionmaker[Session],
    reading_store: SqliteReadingStore,
    clock: Clock,
) -> None:
    # One row per doctor per day would otherwise pile up for as long as the clinic runs.
    repo = SqlAlertRepository(clinic_sessions)
    today = START.date()
    for days_ago in (93, 92, 30):
        day = today - timedelta(days=days_ago)
        assert repo.record_digest_sent(f"{day:%Y-%m-%d}", "dr-li", START - timedelta(days=days_ago))
    await _warnings_for(alert_engine, reading_store, clock, "pt-1")
    async with _mail_server(_Inbox()) as channel:
        assert await alert_engine.send_digest(channel) == 1
    assert _deliveries(clinic_sessions) == [
        (f"{today - timedelta(days=92):%Y-%m-%d}", "dr-li"),
        (f"{today - timedelta(days=30):%Y-%m-%d}", "dr-li"),
        (f"{today:%Y-%m-%d}", "dr-li"),
    ]
