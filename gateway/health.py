"""The gateway's health report (retained on ``status``, :class:`vitals.payload.GatewayStatus`).

Version, uptime, outbox depth and the age of the oldest unacked reading, each meter's last sync
(kept in the outbox through the sync listener, so it survives a restart), battery, signal strength
and last error, the readings kept aside unattributed (counts and time spans per meter, user slot
and reason; never values) and the clinic commands carried out. The same report is written to a
local file so that ``vitalgate gateway status`` works on the box without the broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.outbox import OutboxStats
from vitals.payload import AppliedCommand, GatewayStatus, MeterHealth, UnboundSummary


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vitalgate")
    except PackageNotFoundError:
        return "0+unknown"


SyncListener = Callable[[str, datetime], None]
"""Told (meter_key, when) each time a meter's last sync time is set, to keep it across restarts."""


@dataclass
class MeterState:
    meter_key: str
    last_sequence_number: int | None = None
    battery_percent: int | None = None
    rssi_dbm: int | None = None
    last_error: str | None = None
    sessions: int = 0
    failures: int = 0
    #: Why the bond-level check was not made in the last session (a level recorded at pairing that
    #: cannot be read now); reported as the meter's last error while it has no other.
    bond_unchecked: str | None = None
    on_sync: SyncListener | None = field(default=None, repr=False, compare=False)
    synced_at: datetime | None = None  # read and set as `last_sync_at`

    @property
    def last_sync_at(self) -> datetime | None:
        return self.synced_at

    @last_sync_at.setter
    def last_sync_at(self, when: datetime | None) -> None:
        self.synced_at = when
        if when is not None and self.on_sync is not None:
            self.on_sync(self.meter_key, when)

    def to_health(self) -> MeterHealth:
        return MeterHealth(
            meter_key=self.meter_key,
            last_sync_at=self.last_sync_at,
            last_sequence_number=self.last_sequence_number,
            battery_percent=self.battery_percent,
            rssi_dbm=self.rssi_dbm,
            last_error=self.last_error or self.bond_unchecked,
        )


class GatewayHealth:
    """Collects what the status report says."""

    def __init__(
        self,
        gateway_id: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_sync: SyncListener | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self._on_sync = on_sync
        self._monotonic = monotonic
        self._started = monotonic()
        self.meters: dict[str, MeterState] = {}
        self.last_error: str | None = None
        self.version = software_version()

    def meter(self, meter_key: str) -> MeterState:
        state = self.meters.get(meter_key)
        if state is None:
            state = self.meters[meter_key] = MeterState(meter_key, on_sync=self._on_sync)
        return state

    def restore(self, meter_key: str, last_sync_at: datetime, last_sequence_number: int | None) -> None:
        """What the gateway knew of a meter before it restarted (kept in the outbox), reported until
        the meter syncs again; not told to the sync listener, which kept it."""
        state = self.meter(meter_key)
        state.synced_at = last_sync_at
        if state.last_sequence_number is None:
            state.last_sequence_number = last_sequence_number

    def error(self, message: str) -> None:
        self.last_error = message

    def report(
        self,
        stats: OutboxStats,
        *,
        online: bool = True,
        now: float | None = None,
        unbound: tuple[UnboundSummary, ...] = (),
        applied_commands: tuple[AppliedCommand, ...] = (),
    ) -> GatewayStatus:
        wall = time.time() if now is None else now
        oldest_age = None if stats.oldest_committed_at is None else max(0.0, wall - stats.oldest_committed_at)
        last_error = self.last_error
        if stats.disk_full:
            last_error = f"outbox full: the disk is full ({stats.depth} held): meters are not being read"
        elif stats.full:
            last_error = f"outbox full ({stats.depth}/{stats.capacity}): meters are not being read"
        return GatewayStatus(
            gateway_id=self.gateway_id,
            online=online,
            reported_at=datetime.fromtimestamp(wall, UTC),
            software_version=self.version,
            uptime_s=round(self._monotonic() - self._started, 3),
            outbox_depth=stats.depth,
            outbox_capacity=stats.capacity,
            outbox_full=stats.full,
            oldest_unacked_age_s=None if oldest_age is None else round(oldest_age, 3),
            unbound_readings=stats.unbound,
            unbound=unbound,
            applied_commands=applied_commands,
            meters=tuple(
                state.to_health() for state in sorted(self.meters.values(), key=lambda s: s.meter_key)
            ),
            last_error=last_error,
        )


def write_status_file(path: Path, status: GatewayStatus) -> None:
    """Atomically replace the local copy of the last status report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(status.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_status_file(path: Path) -> GatewayStatus | None:
    if not path.exists():
        return None
    return GatewayStatus.model_validate_json(path.read_bytes())
