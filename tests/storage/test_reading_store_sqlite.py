"""SQLite-only behaviour: durability across reopen, concurrency, the WAL journal."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

from storage.readings import SqliteReadingStore
from tests.storage.readings_data import T0, bp, every_field_readings
from vitals.readings import ReadingKind


def test_committed_batch_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    readings = every_field_readings("p-1")
    store = SqliteReadingStore(path)
    store.write_batch(readings)
    store.close()
    store.close()  # idempotent

    reopened = SqliteReadingStore(path)
    try:
        assert reopened.count() == len(readings)
        assert reopened.write_batch(readings).stored == ()
    finally:
        reopened.close()


def test_wal_journal_and_raw_bytes_column(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path)
    reading = bp("p-1", T0, 120.0, 80.0, raw_hex="1e7800500000")
    store.write_batch([reading])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw, native, canonical = conn.execute(
            "SELECT raw, systolic, systolic_mmhg FROM readings WHERE reading_id = ?", (reading.reading_id,)
        ).fetchone()
    assert raw == bytes.fromhex("1e7800500000")
    assert (native, canonical) == (120.0, 120.0)


def test_concurrent_writers_store_each_reading_exactly_once(tmp_path: Path) -> None:
    store = SqliteReadingStore(tmp_path / "r.sqlite3", synchronous="NORMAL")
    readings = [bp("p-1", T0 + timedelta(minutes=i), 100.0 + i % 50, 70.0) for i in range(400)]
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=10)

    def writer(offset: int) -> None:
        barrier.wait()
        for i in range(offset, len(readings), 50):  # overlapping slices: every id written by 4 threads
            result = store.write_batch(readings[i : i + 100])
            with lock:
                results.append(result)

    threads = [threading.Thread(target=writer, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert not any(t.is_alive() for t in threads)
        newly = [rid for r in results for rid in r.stored]
        assert sorted(newly) == sorted(
            {r.reading_id for r in readings[10:]} | {r.reading_id for r in readings[:10]}
        )
        assert len(newly) == len(set(newly))
        assert store.count() == len(readings)
        got = store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, T0, T0 + timedelta(days=1))
        assert len(got) == len(readings)
    finally:
        store.close()
