"""E-mail over SMTP (stdlib smtplib in a worker thread, with a timeout).

The message names the rule, severity, the patient's opaque id and a link: never a name (DESIGN.md).

A failed send is retried in-process with backoff (`EMAIL_RETRY`, ~30 s in all) when the failure
may pass: the server unreachable or disconnecting, or a 4xx reply, which RFC 5321 §4.2.1 defines
as a transient negative completion ("the same request ... may be successful" later; greylisting
answers this way). A 5xx reply is permanent and is not retried. A retry after a send that did
arrive yields a second e-mail with the same Message-ID, which mail clients treat as one.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from alerts.channels.base import DeliveryError, Notification, RetryPolicy

logger = logging.getLogger(__name__)

# 4 attempts, 2 s, 6 s, 18 s apart: a restarting mail server or a greylisting delay.
EMAIL_RETRY: Final = RetryPolicy(attempts=4, first_delay_s=2.0, factor=3.0, max_delay_s=60.0)
_SMTP_TRANSIENT_CODES: Final = range(400, 500)


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

    def __init__(self, config: SmtpConfig, policy: RetryPolicy = EMAIL_RETRY) -> None:
        self.config = config
        self.policy = policy

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
        await self._send_with_retry(msg)

    async def deliver(self, notification: Notification) -> None:
        msg = self.message(notification)
        if msg is None:
            return
        await self._send_with_retry(msg)

    async def _send_with_retry(self, msg: EmailMessage) -> None:
        delays = self.policy.delays()
        for attempt in range(self.policy.attempts):
            try:
                await asyncio.to_thread(self._send, msg)
                return
            except (OSError, smtplib.SMTPException) as exc:
                problem = _smtp_problem(exc)
                if not _transient(exc) or attempt >= len(delays):
                    raise DeliveryError(f"SMTP delivery failed: {problem}") from exc
            logger.warning("e-mail attempt failed", extra={"attempt": attempt + 1, "error": problem})
            await asyncio.sleep(delays[attempt])

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
