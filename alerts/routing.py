"""Who hears about an alert, on which channel (clinical-rules.md §7 ESC-2).

- Recipients: the patient's family doctor first, then clinic staff on duty in escalation order. An
  escalation adds the next person each time (level 1 = doctor + first staff member on duty, ...).
  Operational rules (alerts.catalogue.Audience.CLINIC_STAFF: a gateway offline, a meter battery low)
  go to the staff of the care team only, never to the family doctor.
- Live channels (SSE hub, clinic MQTT topic) and webhooks get every change, so an acknowledgement
  made anywhere is the one state everywhere.
- E-mail is pushed only for urgent alerts (new, raised, woken or escalated); warnings and info wait
  for the daily digest (ESC-2 "warning batched into daily digest").
Each lifecycle event is delivered at most once per channel (deterministic event id).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.catalogue import RULES, Audience
from alerts.channels.base import Channel, DeliveryError, Notification, Recipient
from alerts.lifecycle import Change
from vitals.payload import AlertSeverity

logger = logging.getLogger(__name__)
DELIVERED_MEMORY = 100_000


def recipients_for(
    team: Sequence[Recipient], escalation_level: int, audience: Audience = Audience.CARE_TEAM
) -> tuple[Recipient, ...]:
    """Family doctor first, then staff on duty; one more person per escalation level. The staff
    only, for a rule whose audience is the clinic staff."""
    if audience is Audience.CLINIC_STAFF:
        team = [r for r in team if r.role != "family_doctor"]
    ordered = sorted(team, key=lambda r: r.role != "family_doctor")
    return tuple(ordered[: escalation_level + 1])


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    channel: str
    event_id: str
    error: str


class Router:
    def __init__(
        self,
        *,
        live: Sequence[Channel] = (),
        webhooks: Sequence[Channel] = (),
        email: Channel | None = None,
        base_url: str = "http://127.0.0.1:8000",
        link_template: str = "{base_url}/alerts/{alert_id}",
    ) -> None:
        self.live = list(live)
        self.webhooks = list(webhooks)
        self.email = email
        self.base_url = base_url.rstrip("/")
        # Where a notification points; the composition root knows the web app's layout.
        self.link_template = link_template
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()

    def link(self, alert_id: str) -> str:
        return self.link_template.format(base_url=self.base_url, alert_id=alert_id)

    def notification(self, change: Change, team: Sequence[Recipient]) -> Notification:
        rec = change.record
        return Notification(
            event_id=change.event_id,
            event=change.payload(),
            title=RULES[rec.rule_id].title,
            link=self.link(rec.alert_id),
            recipients=recipients_for(team, rec.escalation_level, RULES[rec.rule_id].audience),
            escalation_level=rec.escalation_level,
            push=change.notify,
            needs_signoff=rec.needs_signoff,
        )

    async def route(self, change: Change, team: Sequence[Recipient]) -> list[DeliveryFailure]:
        n = self.notification(change, team)
        channels: list[Channel] = [*self.live, *self.webhooks]
        if self.email is not None and change.notify and change.record.severity is AlertSeverity.URGENT:
            channels.append(self.email)
        # Every channel at once: an urgent e-mail never waits behind a webhook's retries.
        results = await asyncio.gather(*(self._deliver(channel, n, change) for channel in channels))
        return [failure for failure in results if failure is not None]

    async def _deliver(self, channel: Channel, n: Notification, change: Change) -> DeliveryFailure | None:
        key = (channel.name, n.event_id)
        if key in self._delivered:
            return None
        try:
            await channel.deliver(n)
        except DeliveryError as exc:
            logger.error(
                "alert delivery failed",
                extra={"channel": channel.name, "event_id": n.event_id, "alert_id": change.record.alert_id},
            )
            return DeliveryFailure(channel.name, n.event_id, str(exc))
        self._delivered[key] = None
        if len(self._delivered) > DELIVERED_MEMORY:
            self._delivered.popitem(last=False)
        return None
