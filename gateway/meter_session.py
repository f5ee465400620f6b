"""One connection to a paired meter as a collector sees it (gateway.meters runs the connections).

A collector (gateway.collect) gets the connected client and a :class:`MeterSession`: the meter, the
sync position it resumes from, the user slots bound to a patient, and the commit that stores
readings and the new sync position in one outbox transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bleak import BleakClient

from gateway.bindings import PairedMeter
from gateway.health import GatewayHealth
from gateway.outbox import CommitResult, SyncPosition
from gateway.session_failures import SpoofedMeterError
from vitals.readings import Reading

ReadingsSink = Callable[[PairedMeter, Sequence[Reading], SyncPosition | None], Awaitable[CommitResult]]


@dataclass
class MeterSession:
    """What a collector gets for one connection: the meter, where to resume, where to commit.

    ``since``: the meter's sync position (None before its first sync), moved by each commit that
    carries one. ``bound_users``: the meter's user slots bound to a patient (a shared cuff's), so the
    collector can make sure each one's records are read (gateway.collect).
    """

    meter: PairedMeter
    since: SyncPosition | None
    _sink: ReadingsSink
    _health: GatewayHealth
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    bound_users: frozenset[int] = frozenset()
    committed: int = 0
    duplicates: int = 0

    @property
    def since_sequence_number(self) -> int | None:
        """The last sequence number committed (a cuff's highest of any user); None before the first."""
        return None if self.since is None else self.since.last_sequence_number

    async def commit(
        self,
        readings: Sequence[Reading],
        *,
        last_sequence_number: int | None = None,
        by_user: Mapping[int, int] | None = None,
    ) -> None:
        """Commit readings and the sync position durably before anything else happens to them:
        ``last_sequence_number`` (None: the position does not move) and ``by_user``, the position of
        each user of a cuff that numbers per user whose position moved (the others keep theirs).

        Raises :class:`gateway.outbox.OutboxFullError` when the outbox is full: the collector must
        stop pulling so the records stay on the meter. Raises :class:`SpoofedMeterError` when a
        reading carries another meter's identity than the one paired at this address.
        """
        for reading in readings:
            if reading.device.meter_key != self.meter.meter_key:
                raise SpoofedMeterError(
                    f"device at {self.meter.address} reports another identity than the one paired"
                )
        position = None
        if last_sequence_number is not None:
            kept = {} if self.since is None else self.since.by_user
            users = {**kept, **(by_user or {})}
            position = SyncPosition(self.meter.meter_key, last_sequence_number, users)
        result = await self._sink(self.meter, readings, position)
        self.committed += result.added + result.added_unbound
        self.duplicates += result.already_held + result.already_delivered
        if position is not None:
            self.since = position
            self._health.meter(self.meter.meter_key).last_sequence_number = last_sequence_number

    def report_battery(self, percent: int) -> None:
        self._health.meter(self.meter.meter_key).battery_percent = max(0, min(100, percent))


Collector = Callable[[BleakClient, MeterSession], Awaitable[None]]
SyncPositionLookup = Callable[[str], Awaitable[SyncPosition | None]]
