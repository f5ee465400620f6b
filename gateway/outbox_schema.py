"""The outbox's tables and the values that go in and out of them (gateway.outbox uses them).

Tables:
- ``outbox``: readings bound to a patient, waiting for their ack (bounded by ``capacity``);
- ``unbound``: readings attributed to no patient (no binding for the meter or user slot, measured
  outside every binding's interval, or a meter clock that could not be trusted), kept aside with the
  reason and reported, never published as anyone's (bounded by ``unbound_capacity``). They leave
  only by a decision: a binding that arrives later and covers them
  (:meth:`gateway.outbox.Outbox.reattribute`), or a person's adopt or discard command from the
  clinic (:meth:`gateway.outbox.Outbox.release`);
- ``delivered``: ids already acked, so a meter that sends its whole memory again (many cuffs do,
  peers.md §1.5 blood-pressure-monitor-fl) does not make the gateway resend what was acked;
- ``sync_position``: per meter, the last record sequence number committed (a glucose meter's, a
  BLS 1.1 cuff's), written in the same transaction as the readings it covers;
- ``user_sync_position``: per meter and user index, the last record sequence number committed for a
  BLS 1.1 cuff, which may number each user's records on their own (GATT Specification Supplement,
  Blood Pressure Record, Sequence Number: "per user"), written with ``sync_position``;
- ``last_sync``: per meter, when its last session ended well (every meter, with records or not), so
  the health report says it from the start after a restart (gateway.outbox_syncs);
- ``applied_commands``: the clinic commands carried out, each in the transaction that carried it out,
  so a command received again changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter

from vitals.payload import RejectedReading, UnboundAction, UnboundReason
from vitals.readings import BloodPressureReading, GlucoseReading, Reading

READING = TypeAdapter(Reading)

# Tables are created with IF NOT EXISTS each time the outbox opens, so an outbox written by an
# earlier release gains the tables added since (``last_sync``) and opens with all it held.
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS user_sync_position (
    meter_key TEXT NOT NULL,
    user_index INTEGER NOT NULL,
    last_sequence_number INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (meter_key, user_index)
);
CREATE TABLE IF NOT EXISTS last_sync (
    meter_key TEXT PRIMARY KEY,
    synced_at_us INTEGER NOT NULL
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
UNBOUND_COLUMNS = {
    "reason": f"TEXT NOT NULL DEFAULT '{UnboundReason.NO_BINDING.value}'",
    "measured_at_us": "INTEGER",
}
APPLIED_COMMANDS_KEPT = 10_000


def epoch_us(when: datetime) -> int:
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_epoch_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


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
    """Where a meter's next sync resumes: ``last_sequence_number``, the last record sequence number
    committed for it (a glucose meter's; a BLS 1.1 cuff's highest of any user), and ``by_user``, the
    last one of each user index of a BLS 1.1 cuff, which may number each user's records on their own
    (GATT Specification Supplement, Blood Pressure Record, Sequence Number: "per user"). Empty
    ``by_user``: one numbering for the whole meter. User index -1 holds the position of every user
    without one of their own (the whole-cuff number of an outbox from before per-user positions,
    device_drivers.procedures.blood_pressure_records.OTHER_USERS). Committed, ``by_user`` moves the
    users it names and leaves the others' positions as they were; a position may go down, since a
    user's numbers loop back to 0 after 65535."""

    meter_key: str
    last_sequence_number: int
    by_user: Mapping[int, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_user", dict(self.by_user))  # a copy the caller cannot change


def write_sync_position(db: sqlite3.Connection, position: SyncPosition, now: float) -> None:
    """Keep the meter's sync position, and each user's it names (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO sync_position (meter_key, last_sequence_number, updated_at) VALUES (?,?,?) "
        "ON CONFLICT (meter_key) DO UPDATE SET last_sequence_number = excluded.last_sequence_number,"
        " updated_at = excluded.updated_at",
        (position.meter_key, position.last_sequence_number, now),
    )
    db.executemany(
        "INSERT INTO user_sync_position (meter_key, user_index, last_sequence_number, updated_at)"
        " VALUES (?,?,?,?) ON CONFLICT (meter_key, user_index) DO UPDATE SET"
        " last_sequence_number = excluded.last_sequence_number, updated_at = excluded.updated_at",
        [(position.meter_key, user, last, now) for user, last in position.by_user.items()],
    )


def read_sync_position(db: sqlite3.Connection, meter_key: str) -> SyncPosition | None:
    """The meter's sync position with each user's; None before its first."""
    row = db.execute(
        "SELECT last_sequence_number FROM sync_position WHERE meter_key = ?", (meter_key,)
    ).fetchone()
    users = db.execute(
        "SELECT user_index, last_sequence_number FROM user_sync_position WHERE meter_key = ?", (meter_key,)
    ).fetchall()
    if row is None:
        return None
    return SyncPosition(meter_key, int(row[0]), {int(u): int(n) for u, n in users})


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
        return READING.validate_json(self.payload)


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


def write_locked(db: sqlite3.Connection, work: Callable[[], None]) -> None:
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


def add_unbound_columns(db: sqlite3.Connection) -> None:
    """Bring an older outbox's ``unbound`` table up to date, filling measurement times in from the
    readings it holds."""
    present = {row[1] for row in db.execute("PRAGMA table_info(unbound)")}
    missing = [name for name in UNBOUND_COLUMNS if name not in present]
    if not missing:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in missing:
            db.execute(f"ALTER TABLE unbound ADD COLUMN {name} {UNBOUND_COLUMNS[name]}")
        rows = db.execute("SELECT seq, payload FROM unbound WHERE measured_at_us IS NULL").fetchall()
        db.executemany(
            "UPDATE unbound SET measured_at_us = ? WHERE seq = ?",
            [(epoch_us(READING.validate_json(payload).measured_at), seq) for seq, payload in rows],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def count_rows(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


def unique_readings(readings: Iterable[Reading]) -> list[Reading]:
    seen: dict[str, Reading] = {}
    for reading in readings:
        seen.setdefault(reading.reading_id, reading)
    return list(seen.values())


def unique_unbound(items: Iterable[UnboundReading]) -> list[UnboundReading]:
    seen: dict[str, UnboundReading] = {}
    for item in items:
        seen.setdefault(item.reading.reading_id, item)
    return list(seen.values())
