"""E-mail over SMTP (stdlib smtplib in a worker thread, with a timeout).

The message names the rule, severity, the patient's opaque id and a link: never a name (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from alerts.channels.base import DeliveryError, Notification


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

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

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
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from exc

    async def deliver(self, notification: Notification) -> None:
        msg = self.message(notification)
        if msg is None:
            return
        try:
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from exc

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
