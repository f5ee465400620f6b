"""The durable outbox: every reading is committed here before anything else happens to it.

SQLite in WAL mode with ``synchronous=FULL``: "Writers sync the WAL on every transaction commit if
PRAGMA synchronous is set to FULL" (reliability.md §4, sqlite.org/wal.html), so a committed reading
survives a power cut as well as a ``kill -9``; NORMAL would survive only the latter.

A reading leaves the outbox only when the clinic's application ack for its ``reading_id`` arrives on
``acks`` (a ``rejected`` entry is final too). A broker PUBACK is not durability: Mosquitto can PUBACK
and then drop (reliability.md §0 items 1-2, mosquitto#1855), so the uplink resends what stays here.

The tables (``unbound`` for readings attributed to no patient, ``delivered``, ``sync_position``,
``last_sync``, ``applied_commands`` beside ``outbox``) are described in :mod:`gateway.outbox_schema`.

When the outbox is full, :meth:`Outbox.commit` refuses the whole batch (nothing is written, the sync
position does not move) and raises :class:`OutboxFullError`; the collector then stops pulling so the
records stay on the meter. Nothing already held is ever dropped to make room: the refuse-and-alarm
policy of reliability.md §4 ("never a silent drop"), unlike Telegraf or Fluent Bit, which drop oldest.

A full disk is refused the same way, and never wedges the outbox: SQLite cannot delete rows or
checkpoint its WAL on a disk with no free byte (every write, a DELETE included, appends to the WAL),
so once the disk filled, acks could never free it. The outbox keeps a reserve file of
``reserve_bytes`` beside its database; when a write fails with SQLITE_FULL it releases the reserve,
refuses new readings (:class:`OutboxFullError`, ``table="disk"``; ``stats().full``, so the health
report says so and the meters are not read), and goes on sending, marking and deleting in the space
the reserve gave back. It takes new readings again once acks have freed room and the reserve could be
made anew.

The class is synchronous and thread-safe; async callers run it in a worker thread
(``asyncio.to_thread``) because each commit waits for an fsync.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from gateway.outbox_decisions import UnboundDecisions
from gateway.outbox_schema import (
    SCHEMA,
    AckResult,
    CommitResult,
    OutboxError,
    OutboxFullError,
    OutboxStats,
    OutboxWriteError,
    PendingReading,
    ReleaseResult,
    SyncPosition,
    UnboundReading,
    add_unbound_columns,
    count_rows,
    epoch_us,
    read_sync_position,
    unique_readings,
    unique_unbound,
    write_sync_position,
)
from gateway.outbox_syncs import LastSyncs, MeterSync
from vitals.payload import RejectedReading
from vitals.readings import Reading

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_UNBOUND_CAPACITY",
    "AckResult",
    "CommitResult",
    "MeterSync",
    "Outbox",
    "OutboxError",
    "OutboxFullError",
    "OutboxStats",
    "OutboxWriteError",
    "PendingReading",
    "ReleaseResult",
    "SyncPosition",
    "UnboundReading",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

SCHEMA_VERSION = 1
DEFAULT_CAPACITY = 100_000  # ~ two years of 4 meters x 30 readings a day
DEFAULT_UNBOUND_CAPACITY = 5_000
DEFAULT_DELIVERED_RETENTION = 200_000  # acked ids remembered to suppress re-sends of re-reported records
BUSY_TIMEOUT_MS = 10_000
DEFAULT_RESERVE_BYTES = 1024 * 1024  # room for acks' deletes and a WAL checkpoint on a full disk
WAL_AUTOCHECKPOINT_PAGES = 128  # SQLite's default is 1,000 pages (4 MB at 4 KiB pages)
WAL_SIZE_LIMIT_BYTES = 1024 * 1024
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL: "Insertion failed because database is full"


class Outbox(UnboundDecisions, LastSyncs):
    """SQLite outbox (WAL, synchronous=FULL). Open with :meth:`open` or as a context manager."""

    def __init__(
        self,
        path: Path,
        *,
        capacity: int = DEFAULT_CAPACITY,
        unbound_capacity: int = DEFAULT_UNBOUND_CAPACITY,
        delivered_retention: int = DEFAULT_DELIVERED_RETENTION,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or unbound_capacity < 1:
            raise ValueError("outbox capacities must be positive")
        self.path = path
        self.capacity = capacity
        self.unbound_capacity = unbound_capacity
        self.delivered_retention = delivered_retention
        self.reserve_bytes = reserve_bytes
        self.reserve_path = path.with_name(path.name + "-reserve")
        self.disk_full = False
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._full_logged = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            # A new outbox gives the pages of delivered readings back to the disk on request
            # (`_room_again`); SQLite takes this setting only before the first table exists.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"SQLite refused WAL mode (got {mode!r}) for the outbox")
            db.execute("PRAGMA synchronous=FULL")
            # A small WAL: what the outbox holds lives in the database file, so a checkpoint on a
            # full disk needs little more room than the reserve gives back.
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise OutboxError(f"outbox integrity check failed: {check}")
            db.executescript(SCHEMA)
            add_unbound_columns(db)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except BaseException:
            db.close()
            raise
        self._db = db
        if not self._make_reserve():
            self.disk_full = True
            logger.error("disk full: the outbox refuses new readings until acks free room")
        return self

    # -- a full disk -----------------------------------------------------------------------------

    def _make_reserve(self) -> bool:
        """The reserve file at its full size; False when the disk has no room for it."""
        if self.reserve_bytes <= 0:
            return True
        try:
            with self.reserve_path.open("ab") as reserve:
                if reserve.tell() < self.reserve_bytes:
                    os.posix_fallocate(reserve.fileno(), 0, self.reserve_bytes)
                    os.fsync(reserve.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            return False
        return True

    def _disk_is_full(self, exc: sqlite3.Error) -> bool:
        """On SQLITE_FULL: release the reserve (once) and refuse new readings; True if it was that."""
        if getattr(exc, "sqlite_errorcode", None) != _SQLITE_FULL:
            return False
        if not self.disk_full:
            logger.error("disk full: the outbox refuses new readings until acks free room")
        self.disk_full = True
        with contextlib.suppress(OSError):
            self.reserve_path.unlink()
        return True

    def _room_again(self, db: sqlite3.Connection) -> None:
        """After acks deleted readings on a full disk: empty the WAL (its file back to the disk),
        hand the deleted rows' pages back to the disk, and take new readings again once the reserve
        could be made anew."""
        if not self.disk_full:
            return
        # executescript steps the vacuum to its end (`execute` frees one page per call).
        for step in (
            "PRAGMA wal_checkpoint(TRUNCATE);",
            "PRAGMA incremental_vacuum;",
            "PRAGMA wal_checkpoint(TRUNCATE);",
        ):
            with contextlib.suppress(sqlite3.Error):
                db.executescript(step)
        if self._make_reserve():
            self.disk_full = False
            logger.info("disk has room again: the outbox takes new readings")

    def _retrying_when_full(self, write: Callable[[], _T]) -> _T:
        """Run `write` (one transaction); on SQLITE_FULL, release the reserve and run it once more."""
        try:
            return write()
        except sqlite3.Error as exc:
            if not self._disk_is_full(exc):
                raise OutboxWriteError(f"outbox write failed: {exc}") from exc
        try:
            return write()
        except sqlite3.Error as exc:
            raise OutboxWriteError(f"outbox write failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("outbox is not open")
        return self._db

    # -- writing ---------------------------------------------------------------------------------

    def commit(
        self,
        readings: Sequence[Reading],
        *,
        unbound: Sequence[UnboundReading] = (),
        sync_position: SyncPosition | None = None,
    ) -> CommitResult:
        """Commit bound readings, unbound readings and the meter's new sync position in one transaction.

        Every bound reading must carry its ``patient_id``. Raises :class:`OutboxFullError` (nothing
        written) when the batch does not fit, :class:`OutboxWriteError` when SQLite fails.
        """
        for reading in readings:
            if reading.patient_id is None:
                raise ValueError(f"reading {reading.reading_id} has no patient_id; commit it as unbound")
        now = self._clock()
        with self._lock:
            db = self._conn()
            if self.disk_full and (readings or unbound):
                self._log_full("disk", count_rows(db, "outbox"), self.capacity, len(readings) + len(unbound))
                raise OutboxFullError(
                    "disk", count_rows(db, "outbox"), self.capacity, len(readings) + len(unbound)
                )
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = self._commit_locked(db, readings, unbound, sync_position, now)
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._disk_is_full(exc)
                raise OutboxWriteError(f"outbox write failed: {exc}") from exc
        return result

    def _commit_locked(
        self,
        db: sqlite3.Connection,
        readings: Sequence[Reading],
        unbound: Sequence[UnboundReading],
        sync_position: SyncPosition | None,
        now: float,
    ) -> CommitResult:
        ids = [r.reading_id for r in readings] + [u.reading.reading_id for u in unbound]
        delivered = self._known(db, "delivered", ids)
        held = self._known(db, "outbox", ids) | self._known(db, "unbound", ids)
        new_bound = unique_readings(r for r in readings if r.reading_id not in delivered | held)
        new_unbound = unique_unbound(u for u in unbound if u.reading.reading_id not in delivered | held)
        depth = count_rows(db, "outbox")
        if depth + len(new_bound) > self.capacity:
            self._log_full("outbox", depth, self.capacity, len(new_bound))
            raise OutboxFullError("outbox", depth, self.capacity, len(new_bound))
        unbound_depth = count_rows(db, "unbound")
        if unbound_depth + len(new_unbound) > self.unbound_capacity:
            self._log_full("unbound", unbound_depth, self.unbound_capacity, len(new_unbound))
            raise OutboxFullError("unbound", unbound_depth, self.unbound_capacity, len(new_unbound))
        db.executemany(
            "INSERT INTO outbox (reading_id, meter_key, patient_id, payload, committed_at)"
            " VALUES (?,?,?,?,?)",
            [(r.reading_id, r.device.meter_key, r.patient_id, r.model_dump_json(), now) for r in new_bound],
        )
        db.executemany(
            "INSERT INTO unbound (reading_id, meter_key, user_id, payload, committed_at, reason, measured_at_us)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (
                    u.reading.reading_id,
                    u.meter_key,
                    u.user_id,
                    u.reading.model_dump_json(),
                    now,
                    u.reason.value,
                    epoch_us(u.reading.measured_at),
                )
                for u in new_unbound
            ],
        )
        if sync_position is not None:
            write_sync_position(db, sync_position, now)
        if self._full_logged and depth + len(new_bound) < self.capacity:
            self._full_logged = False
        return CommitResult(
            added=len(new_bound),
            added_unbound=len(new_unbound),
            already_held=len([i for i in ids if i in held]),
            already_delivered=len([i for i in ids if i in delivered]),
        )

    def _log_full(self, table: str, depth: int, capacity: int, refused: int) -> None:
        # Logged every time (it is the operator's alarm), at ERROR the first time, WARNING after.
        level = logging.WARNING if self._full_logged else logging.ERROR
        self._full_logged = True
        logger.log(
            level,
            "outbox full: refusing new readings, they stay on the meter",
            extra={"table": table, "depth": depth, "capacity": capacity, "refused": refused},
        )

    @staticmethod
    def _known(db: sqlite3.Connection, table: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT reading_id FROM {table} WHERE reading_id IN ({marks})", chunk)  # noqa: S608
            found.update(row[0] for row in rows)
        return found

    # -- sending ---------------------------------------------------------------------------------

    def due(self, *, ack_timeout_s: float, limit: int) -> list[PendingReading]:
        """Readings never sent, or sent more than ``ack_timeout_s`` ago without an ack, oldest first."""
        cutoff = self._clock() - ack_timeout_s
        with self._lock:
            rows = self._conn().execute(
                "SELECT reading_id, payload, send_count FROM outbox"
                " WHERE last_sent_at IS NULL OR last_sent_at <= ? ORDER BY seq LIMIT ?",
                (cutoff, limit),
            )
            return [PendingReading(r[0], r[1], r[2]) for r in rows]

    def mark_sent(self, reading_ids: Sequence[str]) -> None:
        now = self._clock()
        with self._lock:
            db = self._conn()

            def write() -> None:
                db.execute("BEGIN")
                try:
                    db.executemany(
                        "UPDATE outbox SET last_sent_at = ?, send_count = send_count + 1 WHERE reading_id = ?",
                        [(now, rid) for rid in reading_ids],
                    )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")  # never leave a transaction open: later commits would all fail
                    raise

            self._retrying_when_full(write)

    def mark_all_unsent(self) -> int:
        """Make every held reading due now (used on reconnect: resend everything unacked)."""
        with self._lock:
            db = self._conn()
            return self._retrying_when_full(
                lambda: (
                    db.execute(
                        "UPDATE outbox SET last_sent_at = NULL WHERE last_sent_at IS NOT NULL"
                    ).rowcount
                )
            )

    def next_due_at(self, *, ack_timeout_s: float) -> float | None:
        """Clock time at which the earliest in-flight reading becomes due again (None: none in flight)."""
        with self._lock:
            row = self._conn().execute("SELECT MIN(last_sent_at) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0]) + ack_timeout_s

    # -- acks ------------------------------------------------------------------------------------

    def acknowledge(self, stored: Iterable[str], rejected: Iterable[RejectedReading] = ()) -> AckResult:
        """Delete acked readings (stored or rejected: both final) and remember their ids."""
        stored_ids = list(dict.fromkeys(stored))
        rejected_list = list(rejected)
        now = self._clock()
        with self._lock:
            db = self._conn()

            def write() -> tuple[int, list[RejectedReading]]:
                db.execute("BEGIN IMMEDIATE")
                try:
                    deleted = 0
                    known_rejected: list[RejectedReading] = []
                    for rid in stored_ids:
                        deleted += db.execute("DELETE FROM outbox WHERE reading_id = ?", (rid,)).rowcount
                    for entry in rejected_list:
                        n = db.execute(
                            "DELETE FROM outbox WHERE reading_id = ?", (entry.reading_id,)
                        ).rowcount
                        deleted += n
                        if n:
                            known_rejected.append(entry)
                    db.executemany(
                        "INSERT OR REPLACE INTO delivered (reading_id, outcome, acked_at) VALUES (?,?,?)",
                        [(rid, "stored", now) for rid in stored_ids]
                        + [(e.reading_id, "rejected", now) for e in rejected_list],
                    )
                    self._prune_delivered(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return deleted, known_rejected

            deleted, known_rejected = self._retrying_when_full(write)
            if deleted:
                self._room_again(db)
        for entry in known_rejected:
            logger.warning(
                "reading rejected by the clinic, removed from the outbox",
                extra={"reading_id": entry.reading_id, "reason": entry.reason},
            )
        unknown = len(stored_ids) + len(rejected_list) - deleted
        return AckResult(deleted=deleted, rejected=tuple(known_rejected), unknown=unknown)

    def _prune_delivered(self, db: sqlite3.Connection) -> None:
        excess = count_rows(db, "delivered") - self.delivered_retention
        if excess > 0:
            db.execute(
                "DELETE FROM delivered WHERE reading_id IN"
                " (SELECT reading_id FROM delivered ORDER BY acked_at LIMIT ?)",
                (excess,),
            )

    # -- inspection ------------------------------------------------------------------------------

    def sync_position(self, meter_key: str) -> SyncPosition | None:
        """The meter's sync position, with each user's for a cuff that has them."""
        with self._lock:
            return read_sync_position(self._conn(), meter_key)

    def stats(self) -> OutboxStats:
        with self._lock:
            db = self._conn()
            depth = count_rows(db, "outbox")
            unbound = count_rows(db, "unbound")
            oldest = db.execute("SELECT MIN(committed_at) FROM outbox").fetchone()[0]
            in_flight = db.execute("SELECT COUNT(*) FROM outbox WHERE last_sent_at IS NOT NULL").fetchone()[0]
        return OutboxStats(
            depth=depth,
            capacity=self.capacity,
            unbound=unbound,
            unbound_capacity=self.unbound_capacity,
            oldest_committed_at=None if oldest is None else float(oldest),
            in_flight=int(in_flight),
            disk_full=self.disk_full,
        )

    def held_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn().execute("SELECT reading_id FROM outbox")}

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._conn().execute("PRAGMA integrity_check").fetchone()[0])
