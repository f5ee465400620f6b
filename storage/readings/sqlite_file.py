"""Opening the SQLite store's file: WAL journal, synchronous and busy-timeout settings, the schema on
a new file, and retries while another process holds the file locked (see `storage.readings.sqlite`)."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from storage.readings.protocol import ReadingStoreUnavailable
from storage.readings.sqlite_table import SCHEMA, SCHEMA_VERSION

logger = logging.getLogger(__name__)


# How long a connection waits for another process's write lock before giving up (ms).
BUSY_TIMEOUT_MS: Final = 10_000
# How long opening keeps retrying a file that answers "locked" or "busy" (storage.readings.sqlite).
OPEN_TIMEOUT_S: Final = 60.0
_OPEN_RETRY_S: Final = (0.05, 0.1, 0.2, 0.5, 1.0)
# The writer connection's WAL auto-checkpoint threshold, in pages (4 KiB each). SQLite's default is
# 1000 pages, run in the COMMIT that reaches it (sqlite.org/c3ref/wal_autocheckpoint.html), so the
# writer holds the file's one write lock through it. Each random `reading_id` index page a batch
# dirties is copied into the file once per checkpoint, however many batches dirtied it since, so
# fewer checkpoints copy fewer pages (bench/reading_store_write.py measures the write). The WAL then
# grows to ~40 MB between checkpoints; `WAL_SIZE_LIMIT_BYTES` truncates it back after one.
WAL_AUTOCHECKPOINT_PAGES: Final = 10_000
# journal_size_limit: a WAL that grew past this (a long reader holding the checkpoint back) is
# truncated to it once a checkpoint resets it (sqlite.org/pragma.html#pragma_journal_size_limit).
WAL_SIZE_LIMIT_BYTES: Final = 64 * 1024 * 1024


class Locked(Exception):
    """Opening met "database is locked" or "busy": retried (`open_writer`)."""


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc) for word in ("locked", "busy"))


def _locked_or_raise(doing: str, conn: sqlite3.Connection, sql: str) -> Any:
    """One row of `sql` while opening; "locked" or "busy" is `Locked`, anything else final."""
    try:
        return conn.execute(sql).fetchone()
    except sqlite3.Error as exc:
        if _is_locked(exc):
            raise Locked() from exc
        raise ReadingStoreUnavailable(f"cannot open reading store: could not {doing}: {exc}") from exc


def open_writer(path: Path, synchronous: str, busy_timeout_ms: int, timeout_s: float) -> sqlite3.Connection:
    """The writer connection on a file set up to `SCHEMA_VERSION`, retrying "locked" and "busy"
    for `timeout_s` (storage.readings.sqlite); any other failure, or the last one, is `ReadingStoreUnavailable`."""
    deadline = time.monotonic() + timeout_s
    for attempt in itertools.count():
        try:
            conn = connect(path, synchronous, busy_timeout_ms)
            try:
                set_up(conn)
            except BaseException:
                conn.close()
                raise
            return conn
        except Locked as exc:
            pause = _OPEN_RETRY_S[min(attempt, len(_OPEN_RETRY_S) - 1)]
            if time.monotonic() + pause > deadline:
                raise ReadingStoreUnavailable(f"cannot open reading store: {exc.__cause__}") from exc
            logger.warning(
                "reading store locked while opening; retrying",
                extra={"attempt": attempt + 1, "retry_in_s": pause},
            )
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def set_up(conn: sqlite3.Connection) -> None:
    """Create the schema on a new file; a file already at `SCHEMA_VERSION` is only read."""
    version = _locked_or_raise("read the schema version", conn, "PRAGMA user_version")[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise ReadingStoreUnavailable(
            f"reading store schema version {version} is newer than this vitalgate ({SCHEMA_VERSION})"
        )
    try:
        # Another process may set the file up meanwhile: IF NOT EXISTS makes that harmless.
        conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;\n")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _is_locked(exc):
            raise Locked() from exc
        raise ReadingStoreUnavailable(f"cannot initialise reading store: {exc}") from exc


def connect(path: Path, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in WAL mode with the given synchronous setting and busy timeout; "locked" or
    "busy" while setting WAL is `Locked`."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = sqlite3.connect(
            path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise ReadingStoreUnavailable(f"cannot open reading store: {exc}") from exc
    try:
        # Setting WAL takes the file's exclusive lock; a file already in WAL is only read.
        if _locked_or_raise("read the journal mode", conn, "PRAGMA journal_mode")[0] != "wal":
            _locked_or_raise("set the WAL journal", conn, "PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    except BaseException:
        conn.close()
        raise
    return conn
