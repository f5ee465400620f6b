"""What a channel delivers: an alert event for some recipients, with opaque ids and a link only.

Notifications never carry names or other personal data (DESIGN.md, MQTT and Conventions): the patient
appears as an opaque id, and the link opens the alert in the web app, behind login.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Protocol

import stamina

from vitals.payload import AlertEvent


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a channel retries a failed delivery in-process: `attempts` in all, exponential backoff.

    The wait before retry n (1-based) is ``min(first_delay_s * factor ** (n - 1), max_delay_s)``.
    """

    attempts: int = 5
    first_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 60.0
    timeout_s: float = 10.0

    def retry_context(
        self, on: type[Exception] | tuple[type[Exception], ...]
    ) -> AsyncIterable[stamina.Attempt]:
        """The attempts of one delivery: a failure of type `on` is retried after this policy's wait.

        stamina's backoff for retry n is ``min(wait_max, wait_initial * wait_exp_base ** (n - 1) +
        random(0, wait_jitter))`` (stamina API reference, ``stamina.retry``): with no jitter and no
        overall timeout it is exactly this policy's wait. ``stamina.set_testing`` drops the waits.
        """
        return stamina.retry_context(
            on=on,
            attempts=self.attempts,
            timeout=None,
            wait_initial=self.first_delay_s,
            wait_max=self.max_delay_s,
            wait_jitter=0.0,
            wait_exp_base=self.factor,
        )


class DeliveryError(Exception):
    """A channel could not deliver a notification (after its own retries)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: str
    role: str  # family_doctor | clinic_staff
    email: str | None = None  # delivery address only; never put in a message body or log


@dataclass(frozen=True, slots=True)
class Notification:
    event_id: str  # deterministic per lifecycle event: receivers deduplicate on it
    event: AlertEvent
    title: str
    link: str
    recipients: tuple[Recipient, ...]
    escalation_level: int = 0
    push: bool = True  # False: a state change for live inboxes only (ack, resolve, evidence)
    # True while the alert waits for a clinician's sign-off (urgent, resolved unseen: alerts.lifecycle)
    needs_signoff: bool = False

    def body(self) -> dict[str, object]:
        """The JSON body every machine channel sends: the AlertEvent plus link and routing ids."""
        data: dict[str, object] = self.event.model_dump(mode="json")
        data.update(
            event_id=self.event_id,
            title=self.title,
            link=self.link,
            escalation_level=self.escalation_level,
            needs_signoff=self.needs_signoff,
            recipients=[r.user_id for r in self.recipients],
        )
        return data

    def text(self) -> str:
        e = self.event
        return (
            f"vitalgate {e.severity.value} alert {e.rule_id}: {self.title}\n"
            f"Patient: {e.patient_id} (opaque id)\nEvent: {e.event} at {e.at.isoformat()}\n"
            f"Open the alert: {self.link}\n"
        )


class Channel(Protocol):
    name: str

    async def deliver(self, notification: Notification) -> None: ...
