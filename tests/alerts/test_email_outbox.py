"""Urgent e-mails the SMTP server refuses are kept in the clinic database and sent later.

Real parts: the clinic database migrated by Alembic (SQLite here; the model/migration drift check
covers PostgreSQL), aiosmtpd as the mail server, stdlib smtplib as the client.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import DeliveryError
from alerts.channels.email import OUTBOX_MAX_AGE, EmailChannel, SmtpConfig
from alerts.repository import SqlEmailOutbox
from storage.clinic.models import EmailOutboxEntry
from tests.alerts.test_channels import FAST, _GreylistingInbox, _Inbox, _note
from vitalgate.mosquitto import free_port


def _rows(sessions: sessionmaker[Session]) -> list[EmailOutboxEntry]:
    with sessions() as session:
        return list(session.scalars(select(EmailOutboxEntry).order_by(EmailOutboxEntry.outbox_id)))


def _channel(port: int, sessions: sessionmaker[Session]) -> EmailChannel:
    return EmailChannel(SmtpConfig("127.0.0.1", port, timeout_s=2), FAST, outbox=SqlEmailOutbox(sessions))


async def test_an_urgent_email_refused_while_the_server_is_down_is_sent_once_it_is_back(
    clinic_sessions: sessionmaker[Session],
) -> None:
    port = free_port()  # the mail server is down
    with pytest.raises(DeliveryError, match="kept in the outbox"):
        await _channel(port, clinic_sessions).deliver(_note("ev-down"))
    [row] = _rows(clinic_sessions)
    assert (row.event_id, row.sent_at, row.attempts) == ("ev-down", None, FAST.attempts)
    assert b"dr-li@clinic.test" in row.message and b"BP-CRIT-2" in row.message

    # Not due yet: nothing is sent before its time, even to a server that is back.
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        restarted = _channel(port, clinic_sessions)  # a new process: only the database remembers
        assert await restarted.flush_outbox(datetime.now(UTC)) == 0
        later = datetime.now(UTC) + timedelta(minutes=2)
        assert await restarted.flush_outbox(later) == 1
        assert await restarted.flush_outbox(later + timedelta(hours=1)) == 0  # sent once
    finally:
        controller.stop()
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["dr-li@clinic.test"]
    assert f"Message-ID: <{_note('ev-down').event_id}@vitalgate>" in envelope.content.decode()
    [row] = _rows(clinic_sessions)
    assert row.sent_at is not None and row.given_up_at is None


async def test_the_same_event_is_kept_once(clinic_sessions: sessionmaker[Session]) -> None:
    channel = _channel(free_port(), clinic_sessions)
    for _ in range(2):  # an evaluation retried after a crash routes the same event again
        with pytest.raises(DeliveryError):
            await channel.deliver(_note("ev-twice"))
    assert [r.event_id for r in _rows(clinic_sessions)] == ["ev-twice"]


async def test_a_server_that_refuses_for_good_gets_no_outbox_entry(
    clinic_sessions: sessionmaker[Session],
) -> None:
    inbox = _GreylistingInbox(refusals=10, reply="550 5.7.1 Relaying denied")
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(DeliveryError, match="550"):
            await _channel(port, clinic_sessions).deliver(_note("ev-550"))
    finally:
        controller.stop()
    assert _rows(clinic_sessions) == []


async def test_an_email_still_refused_a_day_later_is_given_up_and_kept_for_the_record(
    clinic_sessions: sessionmaker[Session],
) -> None:
    channel = _channel(free_port(), clinic_sessions)
    with pytest.raises(DeliveryError):
        await channel.deliver(_note("ev-old"))
    [row] = _rows(clinic_sessions)
    assert await channel.flush_outbox(row.created_at + timedelta(minutes=2)) == 0  # down: retried later
    [row] = _rows(clinic_sessions)
    assert (
        row.given_up_at is None
        and row.attempts == FAST.attempts + 1
        and "ConnectionRefused" in row.last_error
    )
    assert await channel.flush_outbox(row.created_at + OUTBOX_MAX_AGE + timedelta(minutes=1)) == 0
    [row] = _rows(clinic_sessions)
    assert row.given_up_at is not None and row.sent_at is None
    assert await channel.flush_outbox(row.created_at + OUTBOX_MAX_AGE * 2) == 0  # not tried again
    assert _rows(clinic_sessions)[0].attempts == FAST.attempts + 2


class _BrokenOutbox(SqlEmailOutbox):
    def add(self, *args: object, **kwargs: object) -> bool:
        raise OSError("test: the clinic database is down too")


async def test_an_outbox_that_cannot_keep_the_email_is_reported_as_a_delivery_failure(
    clinic_sessions: sessionmaker[Session],
) -> None:
    channel = EmailChannel(
        SmtpConfig("127.0.0.1", free_port(), timeout_s=2), FAST, outbox=_BrokenOutbox(clinic_sessions)
    )
    with pytest.raises(DeliveryError, match="not kept"):  # the router reports it; the other channels go on
        await channel.deliver(_note("ev-nowhere"))
