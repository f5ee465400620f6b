"""SQLite-only behaviour: durability across reopen, concurrency, the WAL journal."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.readings import ReadingStoreUnavailable, SqliteReadingStore
from storage.readings.sqlite_table import SCHEMA_VERSION
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
    """A batch goes in as a few multi-row INSERTs (256, 128, ... rows; storage/readings/sqlite_table.py):
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


def test_a_replica_opens_the_store_at_once_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """Ingest replicas share one file: one starting while another writes must not wait for (or
    starve behind) the write lock, since opening a file already set up writes nothing."""
    path = tmp_path / "r.sqlite3"
    first = SqliteReadingStore(path)
    first.write_batch([bp("p-1", T0, 120.0, 80.0)])
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # held for the whole test
        writer.execute("DELETE FROM readings")
        started = time.monotonic()
        second = SqliteReadingStore(path, busy_timeout_ms=2_000, open_timeout_s=0.0)
        try:
            assert time.monotonic() - started < 1.5
            assert second.count() == 1  # WAL: the open transaction is not seen, and does not block
        finally:
            second.close()
    finally:
        writer.close()
        first.close()


def test_opening_retries_a_file_that_answers_locked_until_it_is_free(tmp_path: Path) -> None:
    """WAL can answer SQLITE_BUSY without waiting (the last connection cleaning up, recovery after a
    crash: sqlite.org/wal.html). Here a connection in exclusive locking mode holds the file for a
    second, longer than the busy timeout: the store opens once it is free instead of failing."""
    path = tmp_path / "r.sqlite3"
    SqliteReadingStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("COMMIT")  # the exclusive lock stays until the connection closes
    release = threading.Timer(1.0, holder.close)
    release.start()
    started = time.monotonic()
    try:
        store = SqliteReadingStore(path, busy_timeout_ms=100, open_timeout_s=30.0)
    finally:
        release.join()
    try:
        assert time.monotonic() - started >= 0.9
        assert store.count() == 0
    finally:
        store.close()


def test_a_locked_file_that_stays_locked_fails_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    SqliteReadingStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("COMMIT")
    try:
        with pytest.raises(ReadingStoreUnavailable, match="cannot open reading store: database is locked"):
            SqliteReadingStore(path, busy_timeout_ms=50, open_timeout_s=0.5)
    finally:
        holder.close()


def test_a_store_written_by_a_newer_vitalgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    SqliteReadingStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ReadingStoreUnavailable, match="newer than this vitalgate"):
        SqliteReadingStore(path)


def test_the_wal_is_checkpointed_back_into_the_file_under_continuous_writes(tmp_path: Path) -> None:
    # The writer checkpoints every `wal_autocheckpoint_pages` (default 10,000 pages, ~40 MB; a small
    # threshold here so the test stays quick): without checkpoints these 3,000 readings would leave
    # a WAL of ~6 MB. A reader open throughout sees every committed batch.
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path, wal_autocheckpoint_pages=64)
    reader = SqliteReadingStore(path)
    wal = Path(f"{path}-wal")
    largest_wal = 0
    try:
        for batch in range(30):
            start = T0 + timedelta(hours=batch)
            store.write_batch(
                [bp("p-1", start + timedelta(seconds=i), 100.0 + i % 60, 70.0) for i in range(100)]
            )
            largest_wal = max(largest_wal, wal.stat().st_size)
            assert reader.count() == (batch + 1) * 100
    finally:
        reader.close()
        store.close()
    assert largest_wal < 2 * 1024 * 1024, f"WAL grew to {largest_wal} bytes"
    reopened = SqliteReadingStore(path)
    try:
        assert reopened.count() == 3000
        assert (
            len(reopened.query_range("p-1", ReadingKind.BLOOD_PRESSURE, T0, T0 + timedelta(days=2))) == 3000
        )
    finally:
        reopened.close()


def test_a_wal_checkpoint_threshold_below_one_page_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wal_autocheckpoint_pages"):
        SqliteReadingStore(tmp_path / "r.sqlite3", wal_autocheckpoint_pages=0)
