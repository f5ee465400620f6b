"""The outbox keeps each meter's last sync time across restarts, and outboxes from before still open."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.outbox import Outbox, SyncPosition
from testbed.factories import cuff, glucose, glucose_meter


def test_last_sync_times_survive_a_reopen_with_the_sync_position(tmp_path: Path) -> None:
    """A meter's last sync (newest wins) is there after the outbox is closed and opened again, with
    the meter's sync position beside it; a meter without records has its time and no position."""
    path = tmp_path / "outbox.db"
    meter = glucose_meter().meter_key
    first = datetime(2026, 12, 1, 8, 0, 0, 123_456, tzinfo=UTC)
    with Outbox(path) as box:
        box.commit([glucose(7)], sync_position=SyncPosition(meter, 7))
        box.record_syncs({meter: first, cuff().meter_key: first})
        box.record_syncs({meter: first + timedelta(hours=1)})
    with Outbox(path) as box:
        kept = {s.meter_key: s for s in box.meter_syncs()}
    assert kept[meter].last_sync_at == first + timedelta(hours=1)
    assert kept[meter].last_sequence_number == 7
    assert kept[cuff().meter_key].last_sync_at == first
    assert kept[cuff().meter_key].last_sequence_number is None


def test_an_outbox_from_before_last_sync_times_opens_and_keeps_them(tmp_path: Path) -> None:
    """An outbox written by a gateway that kept no last sync times opens with its readings held,
    and keeps last sync times from then on."""
    path = tmp_path / "outbox.db"
    meter = glucose_meter().meter_key
    with Outbox(path) as box:
        box.commit([glucose(1)], sync_position=SyncPosition(meter, 1))
    with sqlite3.connect(path) as db:  # as the earlier release left it: no last_sync table
        db.execute("DROP TABLE last_sync")
    when = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    with Outbox(path) as box:
        assert box.meter_syncs() == []
        assert box.stats().depth == 1
        box.record_syncs({meter: when})
        assert [(s.meter_key, s.last_sync_at, s.last_sequence_number) for s in box.meter_syncs()] == [
            (meter, when, 1)
        ]


def test_a_last_sync_written_late_with_an_older_time_does_not_move_it_back(tmp_path: Path) -> None:
    """A meter's last sync stays at its newest time when an older time is written after it (a write
    from a stopping gateway finishing after the final one)."""
    meter = glucose_meter().meter_key
    newest = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    with Outbox(tmp_path / "outbox.db") as box:
        box.record_syncs({meter: newest})
        box.record_syncs({meter: newest - timedelta(minutes=5)})
        assert [s.last_sync_at for s in box.meter_syncs()] == [newest]
