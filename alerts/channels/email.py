"""E-mail over SMTP (stdlib smtplib in a worker thread, with a timeout).

The message names the rule, severity, the patient's opaque id and a link: never a name (DESIGN.md).

A failed send is retried in-process with backoff (`EMAIL_RETRY`, ~30 s in all) when the failure
may pass: the server unreachable or disconnecting, or a 4xx reply, which RFC 5321 §4.2.1 defines
as a transient negative completion ("the same request ... may be successful" later; greylisting
answers this way). A 5xx reply is permanent and is not retried. A retry after a send that did
arrive yields a second e-mail with the same Message-ID, which mail clients treat as one.

With an `EmailOutbox` (the clinic database's `email_outbox` table), an urgent alert e-mail still
refused after those retries is kept, rendered, and `flush_outbox` sends it later, also after a
restart: backoff from `OUTBOX_FIRST_DELAY` doubling to `OUTBOX_MAX_DELAY`, given up (and logged)
after `OUTBOX_MAX_AGE`, when the alert has long been escalated in the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Final, Protocol

from alerts.channels.base import DeliveryError, Notification, RetryPolicy

logger = logging.getLogger(__name__)

# 4 attempts, 2 s, 6 s, 18 s apart: a restarting mail server or a greylisting delay.
EMAIL_RETRY: Final = RetryPolicy(attempts=4, first_delay_s=2.0, factor=3.0, max_delay_s=60.0)
_SMTP_TRANSIENT_CODES: Final = range(400, 500)
OUTBOX_FIRST_DELAY: Final = timedelta(minutes=1)
OUTBOX_MAX_DELAY: Final = timedelta(minutes=15)
OUTBOX_MAX_AGE: Final = timedelta(hours=24)
OUTBOX_BATCH: Final = 50


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    outbox_id: int
    event_id: str
    message: bytes
    created_at: datetime
    attempts: int


class EmailOutbox(Protocol):
    """Where refused urgent e-mails wait (alerts.repository.SqlEmailOutbox)."""

    def add(
        self, event_id: str, message: bytes, error: str, *, attempts: int, next_attempt_at: datetime
    ) -> bool:
        """Keep one e-mail (once per event_id); False if it was already kept."""
        ...

    def due(self, now: datetime, limit: int) -> Sequence[QueuedEmail]: ...

    def sent(self, outbox_id: int, at: datetime) -> None: ...

    def failed(self, outbox_id: int, error: str, *, next_attempt_at: datetime | None, at: datetime) -> None:
        """Count a failed attempt; `next_attempt_at` None: given up."""
        ...


class _StillRefused(Exception):
    """Every in-process attempt met a transient failure (`problem`: the last one)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "vitalgate@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0


class EmailChannel:
    name = "email"

    def __init__(
        self, config: SmtpConfig, policy: RetryPolicy = EMAIL_RETRY, outbox: EmailOutbox | None = None
    ) -> None:
        self.config = config
        self.policy = policy
        self.outbox = outbox

    def message(self, notification: Notification) -> EmailMessage | None:
        to = sorted({r.email for r in notification.recipients if r.email})
        if not to:
            return None
        e = notification.event
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(to)
        prefix = "ESCALATED " if notification.escalation_level else ""
        msg["Subject"] = f"[vitalgate] {prefix}{e.severity.value.upper()} {e.rule_id} patient {e.patient_id}"
        msg["Message-ID"] = f"<{notification.event_id}@vitalgate>"
        msg.set_content(notification.text())
        return msg

    async def deliver_digest(self, address: str, day: str, lines: list[str]) -> None:
        """One e-mail listing a recipient's open warning/info alerts (ESC-2: daily digest)."""
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = address
        msg["Subject"] = f"[vitalgate] daily digest {day}: {len(lines)} open alert(s)"
        msg.set_content(
            "Open warning and info alerts of your patients (opaque ids):\n\n" + "\n".join(lines) + "\n"
        )
        try:
            await self._send_with_retry(msg)
        except _StillRefused as refused:
            raise DeliveryError(f"SMTP delivery failed: {refused.problem}") from refused.__cause__

    async def deliver(self, notification: Notification) -> None:
        msg = self.message(notification)
        if msg is None:
            return
        try:
            await self._send_with_retry(msg)
        except _StillRefused as refused:
            if self.outbox is None:
                raise DeliveryError(f"SMTP delivery failed: {refused.problem}") from refused.__cause__
            try:
                await asyncio.to_thread(
                    self.outbox.add,
                    notification.event_id,
                    msg.as_bytes(),
                    refused.problem,
                    attempts=self.policy.attempts,
                    next_attempt_at=datetime.now(UTC) + OUTBOX_FIRST_DELAY,
                )
            except Exception as exc:  # the clinic database is down too: say so, as a delivery failure
                logger.exception("urgent e-mail could not be kept", extra={"event_id": notification.event_id})
                raise DeliveryError(
                    f"SMTP delivery failed: {refused.problem}; not kept ({type(exc).__name__})"
                ) from exc
            logger.warning("urgent e-mail kept in the outbox", extra={"event_id": notification.event_id})
            raise DeliveryError(f"SMTP delivery failed: {refused.problem}; kept in the outbox") from refused

    async def flush_outbox(self, now: datetime | None = None) -> int:
        """Send the outbox's due e-mails, one attempt each; returns how many went out."""
        if self.outbox is None:
            return 0
        now = now or datetime.now(UTC)
        sent = 0
        for queued in await asyncio.to_thread(self.outbox.due, now, OUTBOX_BATCH):
            msg = message_from_bytes(queued.message, policy=email_policy.default)
            try:
                await asyncio.to_thread(self._send, msg)
            except (OSError, smtplib.SMTPException) as exc:
                problem = _smtp_problem(exc)
                attempts = queued.attempts + 1
                delay = min(
                    OUTBOX_FIRST_DELAY * 2 ** max(0, attempts - self.policy.attempts), OUTBOX_MAX_DELAY
                )
                retry_at: datetime | None = now + delay
                if not _transient(exc) or now - queued.created_at >= OUTBOX_MAX_AGE:
                    retry_at = None
                    logger.error(
                        "urgent e-mail given up", extra={"event_id": queued.event_id, "error": problem}
                    )
                await asyncio.to_thread(
                    self.outbox.failed, queued.outbox_id, problem, next_attempt_at=retry_at, at=now
                )
                continue
            await asyncio.to_thread(self.outbox.sent, queued.outbox_id, now)
            logger.info("urgent e-mail sent from the outbox", extra={"event_id": queued.event_id})
            sent += 1
        return sent

    async def _send_with_retry(self, msg: EmailMessage) -> None:
        """Send with in-process retries; raises DeliveryError when refused for good, and
        `_StillRefused` when every attempt met a transient failure."""
        async for attempt in self.policy.retry_context(on=_StillRefused):
            with attempt:
                try:
                    await asyncio.to_thread(self._send, msg)
                except (OSError, smtplib.SMTPException) as exc:
                    problem = _smtp_problem(exc)
                    if not _transient(exc):
                        raise DeliveryError(f"SMTP delivery failed: {problem}") from exc
                    if attempt.num < self.policy.attempts:
                        logger.warning(
                            "e-mail attempt failed", extra={"attempt": attempt.num, "error": problem}
                        )
                    raise _StillRefused(problem) from exc
                return

    def _send(self, msg: EmailMessage) -> None:
        c = self.config
        with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
            if c.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if c.username and c.password:
                if not c.starttls:
                    # Never send the password in clear (reliability.md §5: protect credentials in transit).
                    raise DeliveryError("SMTP login refused without STARTTLS: set alerts.smtp_starttls")
                smtp.login(c.username, c.password)
            smtp.send_message(msg)


def _transient(exc: BaseException) -> bool:
    """May the same send succeed later (module doc)? Addresses and texts are not looked at."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code in _SMTP_TRANSIENT_CODES for code, _text in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code in _SMTP_TRANSIENT_CODES
    return isinstance(exc, (OSError, smtplib.SMTPServerDisconnected))


def _smtp_problem(exc: BaseException) -> str:
    """The failure without addresses: the exception type and, for a reply, its code."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    return type(exc).__name__
