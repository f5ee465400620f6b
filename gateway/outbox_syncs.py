"""When each meter last synced (table ``last_sync``), kept across gateway restarts so the health
report names it from the first report on, beside the sync position the outbox already keeps. Mixed
into :class:`gateway.outbox.Outbox`."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.outbox_schema import epoch_us, from_epoch_us, write_locked


@dataclass(frozen=True, slots=True)
class MeterSync:
    """What the outbox remembers of one meter's last sync."""

    meter_key: str
    last_sync_at: datetime
    last_sequence_number: int | None  # glucose meters and BLS 1.1 cuffs only


class LastSyncs:
    """The meters' last sync times (the Outbox supplies the members below)."""

    _lock: threading.Lock

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def record_syncs(self, synced: Mapping[str, datetime]) -> None:
        """Remember when each meter last synced, in one transaction; a time older than the one kept
        leaves it (the newest wins whatever the order of the writes).
        Raises :class:`gateway.outbox_schema.OutboxWriteError` when SQLite fails."""
        if not synced:
            return
        rows = [(key, epoch_us(when)) for key, when in synced.items()]
        with self._lock:
            db = self._conn()

            def write() -> None:
                db.executemany(
                    "INSERT INTO last_sync (meter_key, synced_at_us) VALUES (?,?) "
                    # max(): a write that finishes late (a keeper cancelled at stop) never moves a
                    # meter's last sync back.
                    "ON CONFLICT (meter_key) DO UPDATE SET"
                    " synced_at_us = max(synced_at_us, excluded.synced_at_us)",
                    rows,
                )

            write_locked(db, write)

    def meter_syncs(self) -> list[MeterSync]:
        """Every meter's last sync, with its sync position where it has one."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT l.meter_key, l.synced_at_us, s.last_sequence_number FROM last_sync AS l"
                " LEFT JOIN sync_position AS s ON s.meter_key = l.meter_key ORDER BY l.meter_key"
            )
            return [
                MeterSync(key, from_epoch_us(at), None if seq is None else int(seq)) for key, at, seq in rows
            ]
