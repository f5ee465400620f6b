"""SQLite-only behaviour: durability across reopen, concurrency, the WAL journal."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


POOL = [bp("p-1", T0 + timedelta(minutes=i), 100.0 + i, 70.0) for i in range(12)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, len(POOL) - 1), max_size=8), min_size=1, max_size=6))
def test_any_sequence_of_batches_counts_every_reading_new_exactly_once(
    tmp_path: Path, batches: list[list[int]]
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        store = SqliteReadingStore(Path(directory) / "r.sqlite3", synchronous="NORMAL")
        try:
            ever_new: list[str] = []
            for batch in batches:
                readings = [POOL[i] for i in batch]
                result = store.write_batch(readings)
                # Partition of the batch, in its order: new ones first seen now, the rest duplicates.
                assert sorted(result.all_ids) == sorted(r.reading_id for r in readings)
                assert not set(result.stored) & set(ever_new)
                ever_new.extend(result.stored)
            written = {POOL[i].reading_id for batch in batches for i in batch}
            assert sorted(ever_new) == sorted(written)
            assert store.count() == len(written)
        finally:
            store.close()


def _stored_rows(path: Path) -> dict[str, tuple[object, ...]]:
    """Every column of every row but stored_at (the write's own time), by reading_id."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM readings").fetchall()
    return {row[0]: row[:-1] for row in rows}


def test_batches_of_any_size_store_the_same_rows_as_one_reading_at_a_time(tmp_path: Path) -> None:
    """A batch goes in as a few multi-row INSERTs (256, 128, ... rows; storage/readings/sqlite.py):
    batches around those chunk sizes, glucose and blood pressure mixed, must give row for row what
    writing each reading alone gives."""
    readings = [
        *every_field_readings("p-1"),
        *(bp("p-2", T0 + timedelta(days=1, minutes=i), 100.0 + i % 60, 70.0 + i % 25) for i in range(800)),
    ]
    one_by_one = SqliteReadingStore(tmp_path / "single.sqlite3", synchronous="NORMAL")
    for reading in readings:
        one_by_one.write_batch([reading])
    one_by_one.close()

    batched = SqliteReadingStore(tmp_path / "batched.sqlite3", synchronous="NORMAL")
    start = 0
    for size in (1, 2, 3, 255, 256, 257, len(readings)):
        chunk = readings[start : start + size]
        assert batched.write_batch(chunk).stored == tuple(r.reading_id for r in chunk)
        start += size
    batched.close()
    assert _stored_rows(tmp_path / "batched.sqlite3") == _stored_rows(tmp_path / "single.sqlite3")
    assert len(_stored_rows(tmp_path / "batched.sqlite3")) == len(readings)


def test_a_sqlite_with_a_low_parameter_bound_still_stores_whole_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.32 bound a statement to 999 parameters: the store then uses smaller
    multi-row INSERTs (999 // 30 columns: at most 32 rows), never a statement SQLite refuses."""
    connect = sqlite3.connect

    def old_sqlite(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return conn

    monkeypatch.setattr(sqlite3, "connect", old_sqlite)
    store = SqliteReadingStore(tmp_path / "r.sqlite3", synchronous="NORMAL")
    try:
        readings = [bp("p-1", T0 + timedelta(minutes=i), 100.0 + i % 50, 70.0) for i in range(300)]
        assert len(store.write_batch(readings).stored) == 300
        assert store.count() == 300
    finally:
        store.close()
