"""SQLite reading store: the embedded default (DESIGN.md, Storage).

One table, `readings`, keyed by reading_id (a UNIQUE column on an ordinary rowid table: rows carry
about 1 KB of JSON and raw bytes, and SQLite's WITHOUT ROWID layout suits small rows only; measured
here, the rowid table writes about 3x faster), with an index on (patient_id, kind, measured_at); the
schema is in docs/storage-schema.md. WAL journal, so readers never block the writer; synchronous=FULL
by default, because ingest acks a reading to the gateway as soon as `write_batch` returns and the
gateway then deletes it from its outbox (DESIGN.md, Delivery): a committed batch must survive power
loss. A batch is one transaction (SQLite FAQ, question 19: "50,000 or more INSERT statements
per second ... But it will only do a few dozen transactions per second", reliability.md §7).

Thread safety: one writer connection behind a lock, and one reader connection per calling thread
(WAL lets them read while a write is in progress).

Several processes share one file (ingest replicas, each with its pipeline process; the API and the
alert engine reading). Opening therefore writes nothing when the file is already set up: the journal
mode and the schema version are read first, and only a new or older file takes the write lock, so a
replica starting while another one writes flat out opens at once. And opening is retried: WAL can
answer SQLITE_BUSY without calling the busy handler, for a short time while the last connection
closing cleans up the WAL and shared-memory files, or while the first connection after a crash runs
recovery (sqlite.org/wal.html, "Sometimes Queries Return SQLITE_BUSY In WAL Mode"); without the
retry, a replica starting then fails with "cannot open reading store: database is locked".
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any, Final

import numpy as np

from storage.readings.protocol import (
    AnyReading,
    DailyAggregate,
    HistoryColumns,
    ReadingColumns,
    ReadingStoreError,
    ReadingStoreUnavailable,
    WriteResult,
)
from storage.readings.records import (
    AggregateRow,
    aggregate_daily,
    check_aware,
    check_patient_id,
    day_window,
    in_averages,
    json_list,
    reading_from_json,
    reading_to_json,
    utc_text,
)
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    ReadingKind,
    SampleLocation,
    SampleType,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
# How long a connection waits for another process's write lock before giving up (ms).
BUSY_TIMEOUT_MS: Final = 10_000
# How long opening keeps retrying a file that answers "locked" or "busy" (see the module doc).
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
# Rows deleted per transaction when pruning readings past their retention (`prune`).
PRUNE_BATCH: Final = 5_000
# Rows per `reading_id IN (...)` probe; well under SQLite's default 32766 bound parameters.
_PROBE_CHUNK: Final = 900

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS readings (
    reading_id          TEXT NOT NULL UNIQUE,
    patient_id          TEXT,
    kind                TEXT NOT NULL,
    measured_at         TEXT NOT NULL,
    device_time         TEXT,
    clock_offset_s      REAL,
    received_at         TEXT,
    meter_key           TEXT NOT NULL,
    valid               INTEGER NOT NULL,
    in_averages         INTEGER NOT NULL,
    invalid_reasons     TEXT NOT NULL,
    unit                TEXT NOT NULL,
    systolic            REAL,
    diastolic           REAL,
    mean_arterial       REAL,
    systolic_mmhg       REAL,
    diastolic_mmhg      REAL,
    mean_arterial_mmhg  REAL,
    pulse_bpm           REAL,
    user_id             INTEGER,
    measurement_status  TEXT,
    sequence_number     INTEGER,
    glucose             REAL,
    glucose_mg_dl       REAL,
    sample_type         TEXT,
    sample_location     TEXT,
    sensor_status       TEXT,
    raw                 BLOB,
    reading_json        TEXT NOT NULL,
    stored_at           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_patient_kind_time ON readings (patient_id, kind, measured_at);
"""

_COLUMNS: Final = (
    "reading_id",
    "patient_id",
    "kind",
    "measured_at",
    "device_time",
    "clock_offset_s",
    "received_at",
    "meter_key",
    "valid",
    "in_averages",
    "invalid_reasons",
    "unit",
    "systolic",
    "diastolic",
    "mean_arterial",
    "systolic_mmhg",
    "diastolic_mmhg",
    "mean_arterial_mmhg",
    "pulse_bpm",
    "user_id",
    "measurement_status",
    "sequence_number",
    "glucose",
    "glucose_mg_dl",
    "sample_type",
    "sample_location",
    "sensor_status",
    "raw",
    "reading_json",
    "stored_at",
)
# Rows per multi-row INSERT, largest first: any count is a sum of these, so at most nine distinct
# statements exist (each prepared once and kept in the connection's statement cache). 256 rows are
# 7,680 parameters, under SQLite's default bound of 32,766 since 3.32; a connection with a lower
# bound uses only the sizes that fit (SqliteReadingStore.__init__).
_ROWS_PER_INSERT: Final = (256, 128, 64, 32, 16, 8, 4, 2, 1)


@functools.cache
def _insert_statement(rows: int) -> str:
    """INSERT of `rows` rows in one VALUES list; a reading_id already stored is skipped."""
    one_row = f"({', '.join('?' * len(_COLUMNS))})"
    return (
        f"INSERT INTO readings ({', '.join(_COLUMNS)}) VALUES {', '.join([one_row] * rows)} "  # noqa: S608
        "ON CONFLICT (reading_id) DO NOTHING"
    )


def _insert_rows(
    conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], sizes: Sequence[int] = _ROWS_PER_INSERT
) -> None:
    """Insert `rows` with a few multi-row INSERTs instead of `executemany`.

    The sqlite3 module releases the GIL around every `sqlite3_step`, and `executemany` steps once
    per row. In ingest, paho's network thread takes the GIL at each release and the worker waits to
    get it back, once per row. A multi-row INSERT is one step per statement, so the GIL changes hands
    a few times per batch; on its own it costs the same as executemany."""
    done = 0
    for size in sizes:
        while len(rows) - done >= size:
            conn.execute(
                _insert_statement(size), list(itertools.chain.from_iterable(rows[done : done + size]))
            )
            done += size


_LATEST: Final = (
    "SELECT measured_at, reading_id, reading_json FROM readings WHERE patient_id = ? AND kind = ? "
    "ORDER BY measured_at DESC, reading_id DESC LIMIT 1"
)
_LATEST_VALID: Final = _LATEST.replace("AND kind = ?", "AND kind = ? AND valid = 1")
# `history_columns`: both kinds through the (patient_id, kind, measured_at) index. The time goes out as
# its fixed-width text without the "Z" and numpy turns the lot into epoch microseconds (SQLite's
# strftime cost about as much as the rest of the row, measured). The meal has no column: SQLite cuts
# the text from `"meal":"` on out of a glucose's stored JSON (one instr; `_MEAL`'s pattern), and Python
# keeps what lies between the quotes, so no whole document crosses over.
_MEAL_KEY: Final = '"meal":"'
_HISTORY_BRIEF: Final = (
    "SELECT kind, substr(measured_at, 1, 26), in_averages, "  # noqa: S608 - fixed names and enum values, no input
    "systolic_mmhg, diastolic_mmhg, glucose_mg_dl, "
    f"CASE WHEN kind = 'glucose' THEN substr(reading_json, instr(reading_json, '{_MEAL_KEY}'), 32) END, "
    f"sample_type = '{SampleType.INTERSTITIAL_FLUID.value}' "
    f"OR sample_location = '{SampleLocation.SUBCUTANEOUS_TISSUE.value}' "
    "FROM readings WHERE patient_id = ? AND kind IN ('blood_pressure', 'glucose') "
    "AND measured_at >= ? AND measured_at < ? ORDER BY measured_at, reading_id"
)
_HISTORY: Final = _HISTORY_BRIEF.replace(
    " FROM readings",
    ", reading_id, pulse_bpm, "
    f"kind = 'blood_pressure' AND instr(measurement_status, '\"{BloodPressureStatus.IRREGULAR_PULSE.value}\"') > 0, "
    "CASE WHEN in_averages THEN NULL ELSE reading_json END FROM readings",
)


def _meal_of(cut: str | None) -> str | None:
    """The meal from `_HISTORY`'s cut: text starting at `"meal":"` (anything else: no meal)."""
    if cut is None or not cut.startswith(_MEAL_KEY):
        return None
    return cut[len(_MEAL_KEY) :].partition('"')[0]


_PRUNE: Final = (
    "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings "
    "WHERE patient_id = ? AND kind = ? AND measured_at < ? LIMIT ?)"
)
_PRUNE_NO_PATIENT: Final = (
    "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings "
    "WHERE patient_id IS NULL AND kind = ? AND measured_at < ? LIMIT ?)"
)

_EMPTY_JSON_LIST: Final = "[]"
_NINE_NONES: Final = (None,) * 9  # the blood-pressure columns of a glucose row
# Years 1000-9999 print with four digits under both strftime("%Y") and isoformat(); outside them
# the two differ, so utc_text (strftime) is used there.
_FOUR_DIGIT_YEARS: Final = range(1000, 10_000)

MeterKeys = dict[tuple[str, str, str | None, str | None], str]
"""DeviceIdentity fields -> meter_key, memoised within one batch (a batch holds few meters)."""


def _utc_text(moment: datetime) -> str:
    """`records.utc_text`, the same text, at a third of the cost (isoformat instead of strftime):
    row building is per reading, and ingest's throughput is bound by per-reading work."""
    moment = moment.astimezone(UTC)
    if moment.year not in _FOUR_DIGIT_YEARS:
        return utc_text(moment)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _sorted_values(flags: frozenset[Any]) -> str:
    """A set of StrEnum flags as a sorted JSON list of their values; most readings have none."""
    if not flags:
        return _EMPTY_JSON_LIST
    return json_list(sorted(flag.value for flag in flags))


def _meter_key(device: DeviceIdentity, cache: MeterKeys) -> str:
    key = (device.manufacturer, device.model, device.serial_number, device.address)
    meter_key = cache.get(key)
    if meter_key is None:
        meter_key = cache[key] = device.meter_key
    return meter_key


def reading_row(reading: AnyReading, stored_at: str, meter_keys: MeterKeys | None = None) -> tuple[Any, ...]:
    """The `readings` row of one reading, in `_COLUMNS` order.

    `meter_keys`: a cache of meter keys to share between the rows of one batch."""
    received_at = reading.received_at
    device_time = reading.device_time
    reasons = reading.invalid_reasons
    common = (
        reading.reading_id,
        reading.patient_id,
        reading.kind.value,
        _utc_text(reading.measured_at),
        None if device_time is None else device_time.isoformat(),
        reading.clock_offset_s,
        None if received_at is None else _utc_text(received_at),
        _meter_key(reading.device, {} if meter_keys is None else meter_keys),
        int(reading.valid),
        int(in_averages(reading)),
        json_list(reasons) if reasons else _EMPTY_JSON_LIST,
        reading.unit.value,
    )
    if isinstance(reading, BloodPressureReading):
        specific: tuple[Any, ...] = (
            reading.systolic,
            reading.diastolic,
            reading.mean_arterial,
            reading.systolic_mmhg,
            reading.diastolic_mmhg,
            reading.mean_arterial_mmhg,
            reading.pulse_bpm,
            reading.user_id,
            _sorted_values(reading.measurement_status),
            None,
            None,
            None,
            None,
            None,
            None,
        )
    else:
        specific = (
            *_NINE_NONES,
            reading.sequence_number,
            reading.glucose,
            reading.glucose_mg_dl,
            None if reading.sample_type is None else reading.sample_type.value,
            None if reading.sample_location is None else reading.sample_location.value,
            _sorted_values(reading.sensor_status),
        )
    raw = None if reading.raw_hex is None else bytes.fromhex(reading.raw_hex)
    return (*common, *specific, raw, reading_to_json(reading), stored_at)


# A glucose reading's meal in its stored JSON: the context's "meal" is the only key of that name
# (vitals.readings.GlucoseContext), and a quote inside any JSON string is escaped, so no value can
# contain this pattern.
_MEAL: Final = re.compile(r'"meal":"([a-z_]+)"')


class _Locked(Exception):
    """Opening met "database is locked" or "busy": retried (`SqliteReadingStore._open_writer`)."""


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc) for word in ("locked", "busy"))


def _locked_or_raise(doing: str, conn: sqlite3.Connection, sql: str) -> Any:
    """One row of `sql` while opening; "locked" or "busy" is `_Locked`, anything else final."""
    try:
        return conn.execute(sql).fetchone()
    except sqlite3.Error as exc:
        if _is_locked(exc):
            raise _Locked() from exc
        raise ReadingStoreUnavailable(f"cannot open reading store: could not {doing}: {exc}") from exc


class SqliteReadingStore:
    """`ReadingStore` on one SQLite file (or ":memory:"-like paths are refused: use a temp file)."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        wal_autocheckpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        if wal_autocheckpoint_pages < 1:
            raise ValueError("wal_autocheckpoint_pages must be at least 1")
        self.path = Path(path)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._open_writer(open_timeout_s)
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint_pages)}")
        self._writer.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        parameters = self._writer.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = tuple(n for n in _ROWS_PER_INSERT if n * len(_COLUMNS) <= parameters)

    def _open_writer(self, timeout_s: float) -> sqlite3.Connection:
        """The writer connection on a file set up to `SCHEMA_VERSION`, retrying "locked" and "busy"
        for `timeout_s` (module doc); any other failure, or the last one, is `ReadingStoreUnavailable`."""
        deadline = time.monotonic() + timeout_s
        for attempt in itertools.count():
            try:
                conn = self._connect()
                try:
                    self._set_up(conn)
                except BaseException:
                    conn.close()
                    raise
                return conn
            except _Locked as exc:
                pause = _OPEN_RETRY_S[min(attempt, len(_OPEN_RETRY_S) - 1)]
                if time.monotonic() + pause > deadline:
                    raise ReadingStoreUnavailable(f"cannot open reading store: {exc.__cause__}") from exc
                logger.warning(
                    "reading store locked while opening; retrying",
                    extra={"attempt": attempt + 1, "retry_in_s": pause},
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _set_up(self, conn: sqlite3.Connection) -> None:
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
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;\n"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_locked(exc):
                raise _Locked() from exc
            raise ReadingStoreUnavailable(f"cannot initialise reading store: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise ReadingStoreUnavailable(f"cannot open reading store: {exc}") from exc
        try:
            # Setting WAL takes the file's exclusive lock; a file already in WAL is only read.
            if _locked_or_raise("read the journal mode", conn, "PRAGMA journal_mode")[0] != "wal":
                _locked_or_raise("set the WAL journal", conn, "PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except _Locked as exc:
                raise ReadingStoreUnavailable(f"cannot open reading store: {exc.__cause__}") from exc
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise ReadingStoreError("reading store is closed")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked, disk I/O, full disk: may pass
            raise ReadingStoreUnavailable(f"{what} failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise ReadingStoreError(f"{what} failed: {exc}") from exc

    # -- writes ---------------------------------------------------------------------------------

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if not readings:
            return WriteResult()
        stored_at = utc_text(datetime.now(UTC))
        ids = [r.reading_id for r in readings]
        # The rows are built before taking the write lock, duplicates included (rare outside a
        # replay): the file has one writer, and ingest commits on two threads, so the lock is the
        # serial resource; building rows outside it shortens each turn.
        meter_keys: MeterKeys = {}
        rows = [reading_row(r, stored_at, meter_keys) for r in readings]
        with self._write_lock, self._errors("write"):
            self._check_open()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                present = self._present(conn, ids)
                new: list[tuple[Any, ...]] = []
                stored: list[str] = []
                duplicates: list[str] = []
                for reading_id, row in zip(ids, rows, strict=True):
                    if reading_id in present:
                        duplicates.append(reading_id)
                    else:
                        present.add(reading_id)
                        stored.append(reading_id)
                        new.append(row)
                _insert_rows(conn, new, self._rows_per_insert)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        logger.debug(
            "reading batch written",
            extra={"stored": len(stored), "duplicates": len(duplicates), "store": "sqlite"},
        )
        return WriteResult(stored=tuple(stored), duplicates=tuple(duplicates))

    @staticmethod
    def _present(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
        present: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), _PROBE_CHUNK):
            chunk = unique[i : i + _PROBE_CHUNK]
            rows = conn.execute(
                f"SELECT reading_id FROM readings WHERE reading_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                chunk,
            )
            present.update(row[0] for row in rows)
        return present

    # -- reads ----------------------------------------------------------------------------------

    def query_range(
        self,
        patient_id: str,
        kind: ReadingKind,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> list[AnyReading]:
        check_patient_id(patient_id)
        sql = (
            "SELECT reading_json FROM readings WHERE patient_id = ? AND kind = ? "
            "AND measured_at >= ? AND measured_at < ? ORDER BY measured_at, reading_id"
        )
        params: list[Any] = [
            patient_id,
            ReadingKind(kind).value,
            utc_text(check_aware(start, "start")),
            utc_text(check_aware(end, "end")),
        ]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._errors("range query"):
            rows = self._reader().execute(sql, params).fetchall()
        return [reading_from_json(row[0]) for row in rows]

    def latest(
        self, patient_id: str, kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> AnyReading | None:
        return self.latest_by_patient([patient_id], kind, valid_only=valid_only).get(patient_id)

    def latest_by_patient(
        self, patient_ids: Sequence[str], kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> dict[str, AnyReading]:
        patients = list(dict.fromkeys(check_patient_id(p) for p in patient_ids))
        kinds = list(ReadingKind) if kind is None else [ReadingKind(kind)]
        found: dict[str, AnyReading] = {}
        with self._errors("latest query"):
            conn = self._reader()
            for patient_id in patients:
                candidates: list[tuple[str, str, str]] = []
                for each in kinds:  # one indexed probe per kind: (patient_id, kind, measured_at DESC)
                    row = conn.execute(
                        _LATEST_VALID if valid_only else _LATEST, (patient_id, each.value)
                    ).fetchone()
                    if row is not None:
                        candidates.append(row)
                if candidates:
                    found[patient_id] = reading_from_json(max(candidates)[2])
        return found

    def reading_columns(
        self, patient_id: str, kind: ReadingKind, start: datetime, end: datetime
    ) -> ReadingColumns:
        check_patient_id(patient_id)
        kind = ReadingKind(kind)
        # Numbers straight from their columns, the time as epoch microseconds computed by SQLite
        # (the stored text is fixed-width: the fraction starts at character 21). The JSON is read for
        # readings left out of averages (their reasons), and of glucose for the meal, which has no
        # column: found with `_MEAL` (json_extract, parsing each document, costs three times more).
        blood_pressure = kind is ReadingKind.BLOOD_PRESSURE
        specific = "systolic_mmhg, diastolic_mmhg, pulse_bpm" if blood_pressure else "glucose_mg_dl"
        document = (
            "CASE WHEN in_averages THEN NULL ELSE reading_json END" if blood_pressure else "reading_json"
        )
        sql = (
            "SELECT CAST(strftime('%s', measured_at) AS INTEGER) * 1000000 "  # noqa: S608 - fixed names
            f"+ CAST(substr(measured_at, 21, 6) AS INTEGER), in_averages, {document}, {specific} "
            "FROM readings WHERE patient_id = ? AND kind = ? AND measured_at >= ? AND measured_at < ? "
            "ORDER BY measured_at, reading_id"
        )
        params = (
            patient_id,
            kind.value,
            utc_text(check_aware(start, "start")),
            utc_text(check_aware(end, "end")),
        )
        with self._errors("column query"):
            rows = self._reader().execute(sql, params).fetchall()
        columns = ReadingColumns(kind)
        if not rows:
            return columns
        times, included, documents, *values = zip(*rows, strict=True)
        columns.measured_at_us.extend(times)
        columns.in_averages.extend(bool(flag) for flag in included)
        columns.left_out.extend(
            None if flag else reading_from_json(text) for flag, text in zip(included, documents, strict=True)
        )
        if blood_pressure:
            columns.systolic_mmhg.extend(values[0])
            columns.diastolic_mmhg.extend(values[1])
            columns.pulse_bpm.extend(values[2])
        else:
            columns.glucose_mg_dl.extend(values[0])
            columns.meal.extend(
                found.group(1) if (found := _MEAL.search(text)) else None for text in documents
            )
        return columns

    def history_columns(
        self, patient_ids: Sequence[str], start: datetime, end: datetime, *, details: bool = True
    ) -> HistoryColumns:
        """One indexed range query per patient for both kinds (`_HISTORY`, `_HISTORY_BRIEF`). Numbers
        come from their columns; the meal, which has no column, is cut out of the stored JSON by
        SQLite: only the documents of readings left out of averages cross into Python whole."""
        low = utc_text(check_aware(start, "start"))
        high = utc_text(check_aware(end, "end"))
        columns = HistoryColumns()
        kinds = {kind.value: kind for kind in ReadingKind}
        with self._errors("history query"):
            conn = self._reader()
            for patient_id in dict.fromkeys(check_patient_id(p) for p in patient_ids):
                rows = conn.execute(
                    _HISTORY if details else _HISTORY_BRIEF, (patient_id, low, high)
                ).fetchall()
                if not rows:
                    continue
                kind, times, included, sys_, dia, glucose, meal, cgm, *more = zip(*rows, strict=True)
                columns.patient_id.extend([patient_id] * len(rows))
                columns.kind.extend([kinds[k] for k in kind])
                columns.measured_at_us.extend(
                    np.array(times, dtype="datetime64[us]").astype(np.int64).tolist()
                )
                columns.in_averages.extend([flag == 1 for flag in included])
                columns.systolic_mmhg.extend(sys_)
                columns.diastolic_mmhg.extend(dia)
                columns.glucose_mg_dl.extend(glucose)
                columns.meal.extend([_meal_of(cut) for cut in meal])
                columns.continuous.extend([flag == 1 for flag in cgm])
                if details:
                    ids, pulse, irregular, documents = more
                    columns.reading_id.extend(ids)
                    columns.pulse_bpm.extend(pulse)
                    columns.irregular_pulse.extend([flag == 1 for flag in irregular])
                    columns.left_out.extend(
                        [None if text is None else reading_from_json(text) for text in documents]
                    )
        return columns

    def daily_aggregates(
        self,
        patient_id: str,
        kind: ReadingKind,
        first_day: date,
        last_day: date,
        *,
        tz: tzinfo = UTC,
    ) -> list[DailyAggregate]:
        check_patient_id(patient_id)
        kind = ReadingKind(kind)
        start, end = day_window(first_day, last_day, tz)
        columns = (
            "systolic_mmhg, diastolic_mmhg, pulse_bpm"
            if kind is ReadingKind.BLOOD_PRESSURE
            else "glucose_mg_dl"
        )
        names = [c.strip() for c in columns.split(",")]
        with self._errors("aggregate query"):
            rows = (
                self._reader()
                .execute(
                    f"SELECT measured_at, in_averages, {columns} FROM readings "  # noqa: S608 - fixed names
                    "WHERE patient_id = ? AND kind = ? AND measured_at >= ? AND measured_at < ?",
                    (patient_id, kind.value, utc_text(start), utc_text(end)),
                )
                .fetchall()
            )
        return aggregate_daily(
            patient_id,
            kind,
            (
                AggregateRow(
                    measured_at=datetime.fromisoformat(row[0]),  # "...Z": aware UTC, a tenth of strptime
                    included=bool(row[1]),
                    values=dict(zip(names, row[2:], strict=True)),
                )
                for row in rows
            ),
            tz,
        )

    # -- retention ------------------------------------------------------------------------------

    def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> int:
        """Delete every reading measured before `before` (the retention's cut-off); how many.

        Patient by patient and kind by kind through the (patient_id, kind, measured_at) index, the
        patients found by seeking the index from one to the next, so no pass reads the whole table;
        each transaction deletes at most `batch` rows, so ingest's writes wait at most that long. The
        freed pages are reused by later writes (the file does not shrink)."""
        cutoff = utc_text(check_aware(before, "before"))
        deleted = 0
        for patient_id in [None, *self._patients()]:
            for kind in ReadingKind:
                while True:
                    with self._write_lock, self._errors("prune"):
                        self._check_open()
                        conn = self._writer
                        conn.execute("BEGIN IMMEDIATE")
                        try:
                            cursor = conn.execute(
                                _PRUNE_NO_PATIENT if patient_id is None else _PRUNE,
                                (kind.value, cutoff, batch)
                                if patient_id is None
                                else (patient_id, kind.value, cutoff, batch),
                            )
                            conn.execute("COMMIT")
                        except BaseException:
                            if conn.in_transaction:
                                conn.execute("ROLLBACK")
                            raise
                    deleted += cursor.rowcount
                    if cursor.rowcount < batch:
                        break
        if deleted:
            logger.info("readings past retention deleted", extra={"readings": deleted, "store": "sqlite"})
        return deleted

    def _patients(self) -> list[str]:
        """Every patient id with readings, each found by one index seek from the one before."""
        found: list[str] = []
        with self._errors("patient scan"):
            conn = self._reader()
            last = ""
            while True:
                row = conn.execute(
                    "SELECT min(patient_id) FROM readings WHERE patient_id > ?", (last,)
                ).fetchone()
                if row is None or row[0] is None:
                    return found
                last = row[0]
                found.append(last)

    def count(self) -> int:
        """Number of stored readings (operator checks and tests)."""
        with self._errors("count"):
            return int(self._reader().execute("SELECT count(*) FROM readings").fetchone()[0])

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
