"""Every API replica's live stream carries every alert event of its users' clinic, whichever clinic
process made it (an ingest replica's engine, another API replica, a sweep): the events come from
the clinic database, where every lifecycle change is stored (`alert_events`), not from the process
that made them.

- PostgreSQL: each new `alert_events` row notifies `ALERT_EVENTS_CHANNEL` with its id at commit
  (storage.clinic.coordination); the feed listens, reads those rows and hands them to the hub. After
  a lost connection it listens again and first reads every row after the last one it delivered.
- SQLite (one machine): the feed reads the rows after the last one it delivered every `poll_s`, and
  at once when this process has stored events itself (`FeedWakeup`, a live channel of its router):
  an urgent alert made here reaches the streams without waiting for the next poll. SQLite has one
  writer at a time, so row ids grow in commit order and none is skipped.

Each event is rebuilt as the notification its maker routed (alerts.routing.Router: title, link,
recipients by the care team, escalation level, sign-off flag) and delivered to the hub once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from alerts.channels.base import Notification
from alerts.channels.hub import EventHub
from alerts.directory import PatientDirectory
from alerts.lifecycle import Change
from alerts.repository import LoggedEvent, SqlAlertRepository
from alerts.routing import Router
from storage.clinic.coordination import ALERT_EVENTS_CHANNEL, Notifications
from storage.clinic.database import ClinicDatabase

logger = logging.getLogger(__name__)

POLL_S: Final = 0.5  # SQLite: how often new events are looked for
REMEMBERED: Final = 10_000  # row ids remembered as delivered (a notification and a catch-up may meet)
BATCH: Final = 500


def change_of(logged: LoggedEvent) -> Change:
    """The lifecycle change a stored event records, with the alert as it was at that event."""
    event, alert = logged.event, logged.alert
    record = replace(
        alert,
        state=event.to_state or alert.state,
        severity=event.severity or alert.severity,
        escalation_level=int(event.details.get("escalation_level", alert.escalation_level)),
        needs_signoff=bool(event.details.get("needs_signoff", False)),
    )
    return Change(record, event, notify=False)


class AlertEventFeed:
    """Feeds `hub` with every alert event stored in `database` from now on (module doc)."""

    def __init__(
        self,
        database: ClinicDatabase,
        hub: EventHub,
        directory: PatientDirectory,
        router: Router,
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self.database = database
        self.repository = SqlAlertRepository(database.sessions)
        self.hub = hub
        self.directory = directory
        self.router = router
        self.poll_s = poll_s
        self.delivered = 0
        self._last_row = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        # Set once the feed reads events (after its first position, and on PostgreSQL its LISTEN).
        self.ready = asyncio.Event()
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Read the stored events now: this process has just stored some (used with SQLite, which
        has no notifications; on PostgreSQL the notification does it)."""
        self._woken.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: deliver stored events to the hub as they come."""
        self._last_row = await asyncio.to_thread(self.repository.last_event_row)
        if self.database.dialect == "postgresql":
            await self._listen(stop)
        else:
            await self._poll(stop)

    async def _poll(self, stop: asyncio.Event) -> None:
        self.ready.set()
        while not stop.is_set():
            self._woken.clear()  # a wake during the read below starts another one at once
            try:
                await self._catch_up()
            except Exception:
                logger.exception("alert events not read; reading again")
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._woken.wait())}
            _, pending = await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()

    async def _listen(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Queue[int | None] = asyncio.Queue()

        def notified(payload: str) -> None:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.call_soon_threadsafe(wake.put_nowait, int(payload))

        def connected() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.put_nowait, None)  # None: catch up on what was missed

        listener = Notifications(self.database, ALERT_EVENTS_CHANNEL, notified, connected=connected)
        listener.start()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.create_task(wake.get())
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                first = getting.result()
                items = [first]
                while not wake.empty():
                    items.append(wake.get_nowait())
                try:
                    if None in items:
                        await self._catch_up()
                        self.ready.set()
                    rows = [row for row in items if row is not None and row not in self._seen]
                    if rows:
                        await self._deliver(await asyncio.to_thread(self.repository.logged_events, rows=rows))
                except Exception:
                    logger.exception("alert events not delivered to live streams")
        finally:
            stopping.cancel()
            await asyncio.to_thread(listener.stop)

    async def _catch_up(self) -> None:
        while True:
            logged = await asyncio.to_thread(
                self.repository.logged_events, after_row=self._last_row, limit=BATCH
            )
            await self._deliver(logged)
            if len(logged) < BATCH:
                return

    async def _deliver(self, logged: Sequence[LoggedEvent]) -> None:
        for item in logged:
            if item.row_id in self._seen:
                continue
            self._seen[item.row_id] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            self._last_row = max(self._last_row, item.row_id)
            ctx = await asyncio.to_thread(self.directory.context, item.alert.patient_id)
            team = ctx.care_team if ctx is not None else ()
            await self.hub.deliver(self.router.notification(change_of(item), team))
            self.delivered += 1


class FeedWakeup:
    """A live channel of this process's router that wakes its feed: the alert events this process
    stores reach its live streams at once, without waiting for the feed's next poll (SQLite)."""

    name = "live-stream"

    def __init__(self, feed: AlertEventFeed) -> None:
        self.feed = feed

    async def deliver(self, notification: Notification) -> None:
        self.feed.wake()
