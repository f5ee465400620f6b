"""Deliveries kept for later in the clinic database: urgent e-mails waiting for the SMTP server, and
webhooks a receiver never took (dead letters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.email import QueuedEmail
from alerts.channels.webhook import DeadLetter
from storage.clinic.models import (
    REASON_LENGTH,
    URL_LENGTH,
    EmailOutboxEntry,
    WebhookDeadLetterRecord,
    cut_to,
)


class SqlEmailOutbox:
    """`alerts.channels.email.EmailOutbox` on the clinic database's `email_outbox` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(
        self, event_id: str, message: bytes, error: str, *, attempts: int, next_attempt_at: datetime
    ) -> bool:
        row = EmailOutboxEntry(
            event_id=event_id,
            message=message,
            attempts=attempts,
            last_error=error[:REASON_LENGTH],
            next_attempt_at=next_attempt_at,
        )
        try:
            with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            return False  # this event's e-mail is already kept
        return True

    def due(self, now: datetime, limit: int) -> list[QueuedEmail]:
        with self._sessions() as session:
            rows = session.scalars(
                select(EmailOutboxEntry)
                .where(
                    EmailOutboxEntry.sent_at.is_(None),
                    EmailOutboxEntry.given_up_at.is_(None),
                    EmailOutboxEntry.next_attempt_at <= now,
                )
                .order_by(EmailOutboxEntry.next_attempt_at)
                .limit(limit)
            )
            return [QueuedEmail(r.outbox_id, r.event_id, r.message, r.created_at, r.attempts) for r in rows]

    def sent(self, outbox_id: int, at: datetime) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(EmailOutboxEntry, outbox_id)
            if row is not None:
                row.sent_at = at
                row.attempts += 1

    def failed(self, outbox_id: int, error: str, *, next_attempt_at: datetime | None, at: datetime) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(EmailOutboxEntry, outbox_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = error[:REASON_LENGTH]
            if next_attempt_at is None:
                row.given_up_at = at
            else:
                row.next_attempt_at = next_attempt_at


@dataclass(frozen=True, slots=True)
class KeptWebhook:
    """An undelivered webhook as kept in `webhook_dead_letters`, with the row id an operator names."""

    letter_id: int
    letter: DeadLetter


class SqlWebhookDeadLetters:
    """`alerts.channels.webhook.DeadLetterSink` on the clinic database's `webhook_dead_letters` table.

    One row per undelivered webhook, committed in its own transaction, so that every clinic host and
    the database's backups see it. `recent` is what an operator (or a re-send tool) reads.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, letter: DeadLetter) -> None:
        with self._sessions() as session, session.begin():
            session.add(self._row(letter))

    def add_missing(self, letters: Sequence[DeadLetter]) -> int:
        """Keep the letters not kept yet (same event, receiver, time and body), in one transaction:
        importing the same file twice keeps each letter once. How many were added."""
        added = 0
        with self._sessions() as session, session.begin():
            for letter in letters:
                url = cut_to(letter.url, URL_LENGTH)
                present = session.scalar(
                    select(WebhookDeadLetterRecord.webhook_dead_letter_id).where(
                        WebhookDeadLetterRecord.event_id == letter.event_id,
                        WebhookDeadLetterRecord.url == url,
                        WebhookDeadLetterRecord.dead_at == letter.at,
                        WebhookDeadLetterRecord.body == letter.body,
                    )
                )
                if present is None:
                    session.add(self._row(letter))
                    session.flush()
                    added += 1
        return added

    @staticmethod
    def _row(letter: DeadLetter) -> WebhookDeadLetterRecord:
        return WebhookDeadLetterRecord(
            event_id=letter.event_id,
            url=cut_to(letter.url, URL_LENGTH),
            body=letter.body,
            attempts=letter.attempts,
            last_error=cut_to(letter.last_error, REASON_LENGTH),
            dead_at=letter.at,
        )

    def recent(self, limit: int = 50) -> list[DeadLetter]:
        """The newest `limit` undelivered webhooks, newest first."""
        return [kept.letter for kept in self.kept(limit=limit)]

    def kept(self, *, limit: int | None = 50, letter_ids: Sequence[int] | None = None) -> list[KeptWebhook]:
        """Undelivered webhooks with their row ids, newest first: the newest `limit`, or those of
        `letter_ids` (ids no longer kept are left out)."""
        query = select(WebhookDeadLetterRecord).order_by(
            WebhookDeadLetterRecord.dead_at.desc(), WebhookDeadLetterRecord.webhook_dead_letter_id.desc()
        )
        if letter_ids is not None:
            query = query.where(WebhookDeadLetterRecord.webhook_dead_letter_id.in_(list(letter_ids)))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [
                KeptWebhook(
                    r.webhook_dead_letter_id,
                    DeadLetter(r.url, r.event_id, r.body, r.attempts, r.last_error, r.dead_at),
                )
                for r in session.scalars(query)
            ]

    def delivered(self, letter_id: int) -> None:
        """A re-send reached its receiver: the letter is no longer kept."""
        self.drop([letter_id])

    def failed_again(self, letter_id: int, attempts: int, error: str, at: datetime) -> None:
        """A re-send failed too: count its attempts and keep its error and time."""
        with self._sessions() as session, session.begin():
            row = session.get(WebhookDeadLetterRecord, letter_id)
            if row is not None:
                row.attempts += attempts
                row.last_error = cut_to(error, REASON_LENGTH)
                row.dead_at = at

    def drop(self, letter_ids: Sequence[int]) -> int:
        """Stop keeping these letters (an operator gave up on them); how many were kept."""
        with self._sessions() as session, session.begin():
            rows = session.scalars(
                select(WebhookDeadLetterRecord).where(
                    WebhookDeadLetterRecord.webhook_dead_letter_id.in_(list(letter_ids))
                )
            ).all()
            for row in rows:
                session.delete(row)
            return len(rows)
