"""The durable outbox: commit before anything else, delete only on the application ack, bounded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.outbox import Outbox, OutboxFullError, SyncPosition, UnboundReading
from testbed.factories import blood_pressure, glucose, glucose_meter
from vitals.payload import RejectedReading


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", capacity=10, unbound_capacity=3).open()
    yield box
    box.close()


def test_database_is_wal_with_full_sync(outbox: Outbox) -> None:
    db = sqlite3.connect(outbox.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: check the outbox's own connection.
    assert outbox._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_committed_reading_survives_reopen_and_leaves_only_on_ack(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    reading = glucose(1)
    with Outbox(path) as box:
        box.commit([reading])
    with Outbox(path) as box:
        assert box.held_ids() == {reading.reading_id}
        (pending,) = box.due(ack_timeout_s=30, limit=10)
        assert pending.reading() == reading
        box.mark_sent([reading.reading_id])
        # A broker PUBACK is not an ack: the reading stays until the application ack.
        assert box.held_ids() == {reading.reading_id}
        result = box.acknowledge([reading.reading_id])
        assert result.deleted == 1
    with Outbox(path) as box:
        assert box.held_ids() == set()


def test_rejected_is_final_and_logged(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    reading = blood_pressure(1)
    outbox.commit([reading])
    result = outbox.acknowledge([], [RejectedReading(reading_id=reading.reading_id, reason="schema")])
    assert result.deleted == 1
    assert outbox.held_ids() == set()
    assert any(getattr(r, "reason", None) == "schema" for r in caplog.records)


def test_acked_reading_is_not_taken_back_when_the_meter_reports_it_again(outbox: Outbox) -> None:
    reading = blood_pressure(1)
    outbox.commit([reading])
    outbox.acknowledge([reading.reading_id])
    result = outbox.commit([reading])
    assert result.added == 0
    assert result.already_delivered == 1
    assert outbox.due(ack_timeout_s=0, limit=10) == []


def test_duplicate_commit_is_held_once(outbox: Outbox) -> None:
    reading = glucose(7)
    outbox.commit([reading, reading])
    result = outbox.commit([reading])
    assert result.already_held == 1
    assert outbox.stats().depth == 1


def test_unacked_reading_becomes_due_again_after_the_ack_timeout(tmp_path: Path) -> None:
    now = [1000.0]
    with Outbox(tmp_path / "o.db", clock=lambda: now[0]) as box:
        box.commit([glucose(1), glucose(2)])
        box.mark_sent([r.reading_id for r in box.due(ack_timeout_s=30, limit=10)])
        assert box.due(ack_timeout_s=30, limit=10) == []
        now[0] += 31
        assert len(box.due(ack_timeout_s=30, limit=10)) == 2
        box.mark_sent([r.reading_id for r in box.due(ack_timeout_s=30, limit=10)])
        assert box.mark_all_unsent() == 2
        assert [p.send_count for p in box.due(ack_timeout_s=30, limit=10)] == [2, 2]


def test_full_outbox_refuses_the_batch_keeps_everything_and_does_not_move_the_sync_position(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    meter = glucose_meter().meter_key
    held = [glucose(n) for n in range(1, 9)]
    outbox.commit(held, sync_position=SyncPosition(meter, 8))
    with pytest.raises(OutboxFullError) as excinfo:
        outbox.commit([glucose(n) for n in range(9, 12)], sync_position=SyncPosition(meter, 11))
    assert excinfo.value.refused == 3
    assert outbox.sync_position(meter) == SyncPosition(meter, 8)
    assert outbox.held_ids() == {r.reading_id for r in held}
    assert "outbox full" in caplog.text
    outbox.commit([glucose(9), glucose(10)], sync_position=SyncPosition(meter, 10))
    assert outbox.stats().full
    assert outbox.sync_position(meter) == SyncPosition(meter, 10)
    outbox.acknowledge([held[0].reading_id])
    assert not outbox.stats().full


def test_sync_position_is_committed_with_its_readings_or_not_at_all(outbox: Outbox) -> None:
    meter = glucose_meter().meter_key
    not_bound = glucose(1, patient_id=None)
    with pytest.raises(ValueError, match="patient_id"):
        outbox.commit([not_bound], sync_position=SyncPosition(meter, 1))
    assert outbox.sync_position(meter) is None


def test_unbound_readings_are_kept_aside_bounded_and_never_due(outbox: Outbox) -> None:
    device = glucose_meter("GL-STRAY")
    stray = [glucose(n, device=device, patient_id=None) for n in range(1, 4)]
    outbox.commit([], unbound=[UnboundReading(r, device.meter_key, None) for r in stray])
    assert outbox.due(ack_timeout_s=0, limit=10) == []
    assert outbox.unbound_summary() == {(device.meter_key, None): 3}
    extra = glucose(4, device=device, patient_id=None)
    with pytest.raises(OutboxFullError):
        outbox.commit([], unbound=[UnboundReading(extra, device.meter_key, None)])
    assert outbox.stats().unbound == 3


def test_oldest_unacked_age_is_reported(tmp_path: Path) -> None:
    now = [500.0]
    with Outbox(tmp_path / "o.db", clock=lambda: now[0]) as box:
        assert box.stats().oldest_committed_at is None
        box.commit([glucose(1)])
        now[0] = 560.0
        box.commit([glucose(2)])
        assert box.stats().oldest_committed_at == 500.0
