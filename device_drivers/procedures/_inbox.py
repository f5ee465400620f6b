"""Queue of notifications/indications from several characteristics, with disconnect awareness."""

from __future__ import annotations

import asyncio
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic

from .client import NotifyCallback


class LinkLost(Exception):
    """The disconnected event fired and no queued value is left."""


class Inbox:
    """Collects ``(characteristic, value)`` pairs in arrival order from bleak callbacks.

    bleak calls notification callbacks on the event loop, so a plain asyncio.Queue is safe.
    """

    def __init__(self, disconnected: asyncio.Event | None = None) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._disconnected = disconnected

    def callback(self, characteristic: str) -> NotifyCallback:
        """A bleak notify callback that files values under ``characteristic``."""

        def on_value(_sender: BleakGATTCharacteristic, value: bytearray) -> None:
            self._queue.put_nowait((characteristic, bytes(value)))

        return on_value

    async def next(self, timeout_s: float) -> tuple[str, bytes] | None:
        """The next value, None after ``timeout_s`` of silence; raises LinkLost on disconnect."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._disconnected is not None and self._disconnected.is_set():
            raise LinkLost
        getter = asyncio.ensure_future(self._queue.get())
        waiters: set[asyncio.Future[Any]] = {getter}
        lost: asyncio.Future[Any] | None = None
        if self._disconnected is not None:
            lost = asyncio.ensure_future(self._disconnected.wait())
            waiters.add(lost)
        try:
            done, _pending = await asyncio.wait(
                waiters, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        if getter in done:
            return getter.result()
        if lost is not None and lost in done:
            if not self._queue.empty():
                return self._queue.get_nowait()
            raise LinkLost
        return None
