"""Signed alert webhooks their receiver never took are kept in the clinic database.

Real parts: the clinic database migrated by Alembic (SQLite file here; PostgreSQL in
test_repository_postgres.py), a local HTTP receiver (tests/alerts/test_channels.py). A restart is a
new SQLAlchemy engine on the same database file: only the database remembers what was not delivered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import DeliveryError
from alerts.channels.webhook import SIGNATURE_HEADER, DeadLetter, WebhookChannel, verify
from alerts.repository import SqlWebhookDeadLetters
from storage.clinic.database import create_clinic_engine, session_factory
from storage.clinic.models import REASON_LENGTH, URL_LENGTH, WebhookDeadLetterRecord
from tests.alerts.test_channels import FAST, SECRET, _note, _Receiver
from vitalgate.mosquitto import free_port


def _rows(sessions: sessionmaker[Session]) -> list[WebhookDeadLetterRecord]:
    with sessions() as session:
        return list(
            session.scalars(
                select(WebhookDeadLetterRecord).order_by(WebhookDeadLetterRecord.webhook_dead_letter_id)
            )
        )


async def test_a_webhook_that_keeps_failing_is_kept_with_the_exact_signed_body(
    clinic_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    failing = _Receiver([500] * 10)
    try:
        channel = WebhookChannel([failing.url], SECRET, SqlWebhookDeadLetters(clinic_sessions), policy=FAST)
        with pytest.raises(DeliveryError, match=r"1 webhook\(s\) dead-lettered for event ev-dead$"):
            await channel.deliver(_note("ev-dead"))
    finally:
        failing.close()
    assert len(failing.requests) == FAST.attempts
    headers, sent_body = failing.requests[-1]

    [row] = _rows(clinic_sessions)
    assert (row.event_id, row.url, row.attempts, row.last_error) == (
        "ev-dead",
        failing.url,
        FAST.attempts,
        "HTTP 500",
    )
    assert row.body == sent_body  # byte for byte what was signed and posted
    assert verify(SECRET, row.body, headers[SIGNATURE_HEADER])
    assert row.dead_at.tzinfo is UTC and datetime.now(UTC) - row.dead_at < timedelta(minutes=1)

    # A restart: a new engine and a new sink on the same file still read it.
    engine = create_clinic_engine(f"sqlite:///{tmp_path / 'clinic.db'}")
    try:
        [letter] = SqlWebhookDeadLetters(session_factory(engine)).recent()
    finally:
        engine.dispose()
    assert letter == DeadLetter(failing.url, "ev-dead", sent_body, FAST.attempts, "HTTP 500", row.dead_at)


async def test_each_failing_receiver_gets_its_own_row(clinic_sessions: sessionmaker[Session]) -> None:
    refusing = _Receiver([400])
    try:
        unreachable = f"http://127.0.0.1:{free_port()}/hook"
        channel = WebhookChannel(
            [refusing.url, unreachable], SECRET, SqlWebhookDeadLetters(clinic_sessions), policy=FAST
        )
        with pytest.raises(DeliveryError, match=r"2 webhook\(s\) dead-lettered"):
            await channel.deliver(_note("ev-two"))
    finally:
        refusing.close()
    rows = {row.url: row for row in _rows(clinic_sessions)}
    assert rows.keys() == {refusing.url, unreachable}
    assert (rows[refusing.url].attempts, rows[refusing.url].last_error) == (1, "HTTP 400")  # not retried
    assert (rows[unreachable].attempts, rows[unreachable].last_error) == (FAST.attempts, "ConnectError")
    assert rows[refusing.url].body == rows[unreachable].body


def test_recent_is_newest_first_and_bounded(clinic_sessions: sessionmaker[Session]) -> None:
    sink = SqlWebhookDeadLetters(clinic_sessions)
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for minute in (0, 2, 1):
        sink.add(
            DeadLetter(
                "https://hooks.test/a", f"ev-{minute}", b"{}", 5, "HTTP 503", start.replace(minute=minute)
            )
        )
    assert [letter.event_id for letter in sink.recent(2)] == ["ev-2", "ev-1"]
    assert [letter.event_id for letter in sink.recent()] == ["ev-2", "ev-1", "ev-0"]


def test_an_overlong_url_or_error_is_stored_cut_not_lost(clinic_sessions: sessionmaker[Session]) -> None:
    sink = SqlWebhookDeadLetters(clinic_sessions)
    url = "https://hooks.test/" + "a" * URL_LENGTH
    sink.add(DeadLetter(url, "ev-long", b'{"a":1}', 5, "x" * (REASON_LENGTH + 10), datetime.now(UTC)))
    [letter] = sink.recent()
    assert len(letter.url) == URL_LENGTH and letter.url.endswith("…") and url.startswith(letter.url[:-1])
    assert len(letter.last_error) == REASON_LENGTH and letter.body == b'{"a":1}'


class _BrokenSink(SqlWebhookDeadLetters):
    def add(self, letter: DeadLetter) -> None:
        raise OSError("test: the clinic database is down too")


async def test_a_sink_that_cannot_keep_the_webhook_is_reported_as_a_delivery_failure(
    clinic_sessions: sessionmaker[Session],
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    channel = WebhookChannel([unreachable], SECRET, _BrokenSink(clinic_sessions), policy=FAST)
    with pytest.raises(DeliveryError, match=r"1 not kept \(OSError\)"):  # the router reports it
        await channel.deliver(_note("ev-nowhere"))
    assert _rows(clinic_sessions) == []
