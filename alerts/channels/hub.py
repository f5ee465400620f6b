"""In-process fan-out of alert events to live subscribers (the SSE stream of the API).

Every lifecycle change is delivered, once per subscriber: opened, acknowledged, snoozed, resolved,
escalated, and the sign-off transitions: a resolve that leaves an urgent alert waiting for sign-off
(`Notification.needs_signoff` true) and the "signed_off" that ends the wait.

Each subscriber gets a bounded queue. A subscriber that falls behind is dropped (its stream ends and
the browser reconnects and reloads the inbox) rather than letting memory grow without bound (OWASP
API4, reliability.md §5.2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from alerts.channels.base import Notification

logger = logging.getLogger(__name__)
SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(eq=False)
class Subscription:
    clinic_id: str
    queue: asyncio.Queue[Notification | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_SIZE)
    )
    dropped: bool = False

    async def next(self, timeout_s: float) -> Notification | None:
        """The next event, or None on timeout (for keep-alive comments) or when dropped."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None


class EventHub:
    name = "sse"

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._changed = asyncio.Condition()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @asynccontextmanager
    async def subscribe(self, clinic_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription(clinic_id)
        self._subs.add(sub)
        async with self._changed:
            self._changed.notify_all()
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    async def wait_for_subscribers(self, count: int, timeout_s: float) -> None:
        """Wait until at least `count` streams are subscribed (TimeoutError after `timeout_s`)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self._subs) >= count)

    async def deliver(self, notification: Notification) -> None:
        for sub in list(self._subs):
            if sub.clinic_id != notification.event.clinic_id or sub.dropped:
                continue
            try:
                sub.queue.put_nowait(notification)
            except asyncio.QueueFull:
                sub.dropped = True
                self._subs.discard(sub)
                logger.warning("dropping slow alert stream subscriber", extra={"clinic_id": sub.clinic_id})
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
