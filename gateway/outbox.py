"""The durable outbox: every reading is committed here before anything else happens to it.

SQLite in WAL mode with ``synchronous=FULL``: "Writers sync the WAL on every transaction commit if
PRAGMA synchronous is set to FULL" (reliability.md §4, sqlite.org/wal.html), so a committed reading
survives a power cut as well as a ``kill -9``; NORMAL would survive only the latter.

A reading leaves the outbox only when the clinic's application ack for its ``reading_id`` arrives on
``acks`` (a ``rejected`` entry is final too). A broker PUBACK is not durability: Mosquitto can PUBACK
and then drop (reliability.md §0 items 1-2, mosquitto#1855), so the uplink resends what stays here.

Tables:
- ``outbox``: readings bound to a patient, waiting for their ack (bounded by ``capacity``);
- ``unbound``: readings attributed to no patient (no binding for the meter or user slot, measured
  outside every binding's interval, or a meter clock that could not be trusted), kept aside with the
  reason and reported, never published as anyone's (bounded by ``unbound_capacity``). They leave
  only by a decision: a binding that arrives later and covers them (:meth:`Outbox.reattribute`), or
  a person's adopt or discard command from the clinic (:meth:`Outbox.release`);
- ``delivered``: ids already acked, so a meter that sends its whole memory again (many cuffs do,
  peers.md §1.5 blood-pressure-monitor-fl) does not make the gateway resend what was acked;
- ``sync_position``: per meter, the last glucose sequence number committed, written in the same
  transaction as the readings it covers;
- ``applied_commands``: the clinic commands carried out, each in the transaction that carried it out,
  so a command received again changes nothing.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter

from vitals.payload import (
    AppliedCommand,
    RejectedReading,
    UnboundAction,
    UnboundReason,
    UnboundRelease,
    UnboundSummary,
)
from vitals.readings import BloodPressureReading, GlucoseReading, Reading

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_CAPACITY = 100_000  # ~ two years of 4 meters x 30 readings a day
DEFAULT_UNBOUND_CAPACITY = 5_000
DEFAULT_DELIVERED_RETENTION = 200_000  # acked ids remembered to suppress re-sends of re-reported records
BUSY_TIMEOUT_MS = 10_000
DEFAULT_RESERVE_BYTES = 1024 * 1024  # room for acks' deletes and a WAL checkpoint on a full disk
WAL_AUTOCHECKPOINT_PAGES = 128  # SQLite's default is 1,000 pages (4 MB at 4 KiB pages)
WAL_SIZE_LIMIT_BYTES = 1024 * 1024
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL: "Insertion failed because database is full"

_READING = TypeAdapter(Reading)
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reading_id TEXT NOT NULL UNIQUE,
    meter_key TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    committed_at REAL NOT NULL,
    last_sent_at REAL,
    send_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS unbound (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reading_id TEXT NOT NULL UNIQUE,
    meter_key TEXT NOT NULL,
    user_id INTEGER,
    payload TEXT NOT NULL,
    committed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_commands (
    command_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    readings INTEGER NOT NULL,
    applied_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_commands_by_time ON applied_commands (applied_at);
CREATE TABLE IF NOT EXISTS delivered (
    reading_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    acked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_by_time ON delivered (acked_at);
CREATE TABLE IF NOT EXISTS sync_position (
    meter_key TEXT PRIMARY KEY,
    last_sequence_number INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox could not do what was asked."""


class OutboxFullError(OutboxError):
    """The outbox holds ``capacity`` readings; the batch was refused and nothing was written."""

    def __init__(self, table: str, depth: int, capacity: int, refused: int) -> None:
        super().__init__(f"{table} full: {depth}/{capacity} held, {refused} refused")
        self.table = table
        self.depth = depth
        self.capacity = capacity
        self.refused = refused


class OutboxWriteError(OutboxError):
    """SQLite refused the write (disk full, I/O error): nothing of the batch was committed."""


# Columns added to ``unbound`` after its first release: added in place when an older outbox opens.
# ``measured_at_us``: the reading's corrected measurement time, integer microseconds since the epoch
# (exact, so a time span reported to the clinic selects exactly the readings it counted).
_UNBOUND_COLUMNS = {
    "reason": f"TEXT NOT NULL DEFAULT '{UnboundReason.NO_BINDING.value}'",
    "measured_at_us": "INTEGER",
}
APPLIED_COMMANDS_KEPT = 10_000


def _epoch_us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_epoch_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True, slots=True)
class UnboundReading:
    """A reading attributed to no patient on this gateway, and why."""

    reading: Reading
    meter_key: str
    user_id: int | None
    reason: UnboundReason = UnboundReason.NO_BINDING


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What a clinic command did: readings adopted (moved to the outbox) or discarded."""

    command_id: str
    action: UnboundAction
    readings: int
    already_applied: bool = False


@dataclass(frozen=True, slots=True)
class SyncPosition:
    """The last glucose record sequence number committed for one meter."""

    meter_key: str
    last_sequence_number: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    added: int
    added_unbound: int
    already_held: int
    already_delivered: int


@dataclass(frozen=True, slots=True)
class PendingReading:
    reading_id: str
    payload: str
    send_count: int

    def reading(self) -> BloodPressureReading | GlucoseReading:
        return _READING.validate_json(self.payload)


@dataclass(frozen=True, slots=True)
class AckResult:
    deleted: int
    rejected: tuple[RejectedReading, ...]
    unknown: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    capacity: int
    unbound: int
    unbound_capacity: int
    oldest_committed_at: float | None
    in_flight: int
    disk_full: bool = False

    @property
    def full(self) -> bool:
        return self.depth >= self.capacity or self.disk_full


class Outbox:
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
            db.executescript(_SCHEMA)
            _add_unbound_columns(db)
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
                self._log_full("disk", _count(db, "outbox"), self.capacity, len(readings) + len(unbound))
                raise OutboxFullError(
                    "disk", _count(db, "outbox"), self.capacity, len(readings) + len(unbound)
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
        new_bound = _unique(r for r in readings if r.reading_id not in delivered | held)
        new_unbound = _unique_unbound(u for u in unbound if u.reading.reading_id not in delivered | held)
        depth = _count(db, "outbox")
        if depth + len(new_bound) > self.capacity:
            self._log_full("outbox", depth, self.capacity, len(new_bound))
            raise OutboxFullError("outbox", depth, self.capacity, len(new_bound))
        unbound_depth = _count(db, "unbound")
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
                    _epoch_us(u.reading.measured_at),
                )
                for u in new_unbound
            ],
        )
        if sync_position is not None:
            db.execute(
                "INSERT INTO sync_position (meter_key, last_sequence_number, updated_at) VALUES (?,?,?) "
                "ON CONFLICT (meter_key) DO UPDATE SET last_sequence_number = excluded.last_sequence_number,"
                " updated_at = excluded.updated_at",
                (sync_position.meter_key, sync_position.last_sequence_number, now),
            )
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
        excess = _count(db, "delivered") - self.delivered_retention
        if excess > 0:
            db.execute(
                "DELETE FROM delivered WHERE reading_id IN"
                " (SELECT reading_id FROM delivered ORDER BY acked_at LIMIT ?)",
                (excess,),
            )

    # -- inspection ------------------------------------------------------------------------------

    def sync_position(self, meter_key: str) -> int | None:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT last_sequence_number FROM sync_position WHERE meter_key = ?", (meter_key,))
                .fetchone()
            )
        return None if row is None else int(row[0])

    def stats(self) -> OutboxStats:
        with self._lock:
            db = self._conn()
            depth = _count(db, "outbox")
            unbound = _count(db, "unbound")
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

    def unbound_summary(self) -> dict[tuple[str, int | None], int]:
        """(meter_key, user slot) -> number of readings kept aside for want of a binding."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT meter_key, user_id, COUNT(*) FROM unbound GROUP BY meter_key, user_id"
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def unbound_groups(self) -> tuple[UnboundSummary, ...]:
        """Readings kept aside, by meter, user slot and reason: counts and measurement time spans."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT meter_key, user_id, reason, COUNT(*), MIN(measured_at_us), MAX(measured_at_us)"
                " FROM unbound GROUP BY meter_key, user_id, reason ORDER BY meter_key, user_id, reason"
            )
            return tuple(
                UnboundSummary(
                    meter_key=r[0],
                    user_id=r[1],
                    reason=UnboundReason(r[2]),
                    count=int(r[3]),
                    first_measured_at=_from_epoch_us(int(r[4])),
                    last_measured_at=_from_epoch_us(int(r[5])),
                )
                for r in rows
            )

    # -- decisions on unbound readings -----------------------------------------------------------

    def reattribute(self, attribute: Callable[[Reading], str | UnboundReason]) -> int:
        """Attribute again every reading kept aside (the bindings changed): those that now belong to
        a patient move to the outbox, the others keep (or change) their reason. Returns how many moved.

        Raises :class:`OutboxFullError` (nothing moved) when they do not fit in the outbox."""
        with self._lock:
            db = self._conn()
            rows = db.execute("SELECT seq, payload, reason FROM unbound ORDER BY seq").fetchall()
            moved: list[tuple[int, Reading]] = []
            reasons: list[tuple[str, int]] = []
            for seq, payload, reason in rows:
                reading = _READING.validate_json(payload)
                found = attribute(reading)
                if isinstance(found, UnboundReason):
                    if found.value != reason:
                        reasons.append((found.value, seq))
                else:
                    moved.append((seq, reading.model_copy(update={"patient_id": found})))
            if not moved and not reasons:
                return 0
            self._write_locked(db, lambda: self._move_to_outbox(db, moved, reasons))
        if moved:
            logger.info(
                "unbound readings attributed by the bindings now held", extra={"readings": len(moved)}
            )
        return len(moved)

    def _move_to_outbox(
        self, db: sqlite3.Connection, moved: Sequence[tuple[int, Reading]], reasons: Sequence[tuple[str, int]]
    ) -> None:
        depth = _count(db, "outbox")
        ids = [r.reading_id for _seq, r in moved]
        settled = self._known(db, "outbox", ids) | self._known(db, "delivered", ids)
        new = [r for _seq, r in moved if r.reading_id not in settled]
        if depth + len(new) > self.capacity:
            self._log_full("outbox", depth, self.capacity, len(new))
            raise OutboxFullError("outbox", depth, self.capacity, len(new))
        now = self._clock()
        db.executemany(
            "INSERT INTO outbox (reading_id, meter_key, patient_id, payload, committed_at) VALUES (?,?,?,?,?)",
            [(r.reading_id, r.device.meter_key, r.patient_id, r.model_dump_json(), now) for r in new],
        )
        db.executemany("DELETE FROM unbound WHERE seq = ?", [(seq,) for seq, _r in moved])
        db.executemany("UPDATE unbound SET reason = ? WHERE seq = ?", reasons)

    def release(self, command: UnboundRelease) -> ReleaseResult:
        """Carry out a person's decision on the readings of one meter (user slot) kept aside and
        measured within the command's span: adopt them to its patient (they move to the outbox and are
        sent like any reading) or discard them (remembered as delivered, so a meter sending its
        memory again does not bring them back). Once per command id, in one transaction with the
        record that it was done. Raises :class:`OutboxFullError` (nothing done) when adopted readings
        do not fit."""
        with self._lock:
            db = self._conn()
            if db.execute(
                "SELECT 1 FROM applied_commands WHERE command_id = ?", (command.command_id,)
            ).fetchone():
                return ReleaseResult(command.command_id, command.action, 0, already_applied=True)
            rows = db.execute(
                "SELECT seq, reading_id, payload FROM unbound WHERE meter_key = ? AND user_id IS ?"
                " AND measured_at_us BETWEEN ? AND ? ORDER BY seq",
                (
                    command.meter_key,
                    command.user_id,
                    _epoch_us(command.measured_from),
                    _epoch_us(command.measured_to),
                ),
            ).fetchall()

            def apply() -> None:
                if command.action is UnboundAction.ADOPT:
                    moved = [
                        (
                            seq,
                            _READING.validate_json(payload).model_copy(
                                update={"patient_id": command.patient_id}
                            ),
                        )
                        for seq, _rid, payload in rows
                    ]
                    self._move_to_outbox(db, moved, ())
                else:
                    now = self._clock()
                    db.executemany("DELETE FROM unbound WHERE seq = ?", [(seq,) for seq, _rid, _p in rows])
                    db.executemany(
                        "INSERT OR REPLACE INTO delivered (reading_id, outcome, acked_at) VALUES (?,?,?)",
                        [(rid, "discarded", now) for _seq, rid, _p in rows],
                    )
                db.execute(
                    "INSERT INTO applied_commands (command_id, action, readings, applied_at) VALUES (?,?,?,?)",
                    (command.command_id, command.action.value, len(rows), self._clock()),
                )
                db.execute(
                    "DELETE FROM applied_commands WHERE command_id IN (SELECT command_id FROM applied_commands"
                    " ORDER BY applied_at DESC LIMIT -1 OFFSET ?)",
                    (APPLIED_COMMANDS_KEPT,),
                )

            self._write_locked(db, apply)
        logger.info(
            "clinic decision on unbound readings carried out",
            extra={"command_id": command.command_id, "action": command.action.value, "readings": len(rows)},
        )
        return ReleaseResult(command.command_id, command.action, len(rows))

    def applied_commands(self, limit: int) -> tuple[AppliedCommand, ...]:
        """The most recently carried-out commands, newest first."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT command_id, readings FROM applied_commands ORDER BY applied_at DESC, command_id LIMIT ?",
                (limit,),
            )
            return tuple(AppliedCommand(command_id=r[0], readings=int(r[1])) for r in rows)

    def is_applied(self, command_id: str) -> bool:
        with self._lock:
            return (
                self._conn()
                .execute("SELECT 1 FROM applied_commands WHERE command_id = ?", (command_id,))
                .fetchone()
                is not None
            )

    @staticmethod
    def _write_locked(db: sqlite3.Connection, work: Callable[[], None]) -> None:
        """Run ``work`` in one IMMEDIATE transaction (the caller holds the lock)."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                work()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxWriteError(f"outbox write failed: {exc}") from exc

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._conn().execute("PRAGMA integrity_check").fetchone()[0])


def _add_unbound_columns(db: sqlite3.Connection) -> None:
    """Bring an older outbox's ``unbound`` table up to date, filling measurement times in from the
    readings it holds."""
    present = {row[1] for row in db.execute("PRAGMA table_info(unbound)")}
    missing = [name for name in _UNBOUND_COLUMNS if name not in present]
    if not missing:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in missing:
            db.execute(f"ALTER TABLE unbound ADD COLUMN {name} {_UNBOUND_COLUMNS[name]}")
        rows = db.execute("SELECT seq, payload FROM unbound WHERE measured_at_us IS NULL").fetchall()
        db.executemany(
            "UPDATE unbound SET measured_at_us = ? WHERE seq = ?",
            [(_epoch_us(_READING.validate_json(payload).measured_at), seq) for seq, payload in rows],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


def _unique(readings: Iterable[Reading]) -> list[Reading]:
    seen: dict[str, Reading] = {}
    for reading in readings:
        seen.setdefault(reading.reading_id, reading)
    return list(seen.values())


def _unique_unbound(items: Iterable[UnboundReading]) -> list[UnboundReading]:
    seen: dict[str, UnboundReading] = {}
    for item in items:
        seen.setdefault(item.reading.reading_id, item)
    return list(seen.values())
