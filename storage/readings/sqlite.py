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

This module is the store; the table (schema, rows, SQL) is in `storage.readings.sqlite_table`, and
opening the file (WAL, settings, schema set-up, retries) in `storage.readings.sqlite_file`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
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
    reading_from_json,
    utc_text,
)
from storage.readings.sqlite_file import (
    BUSY_TIMEOUT_MS,
    OPEN_TIMEOUT_S,
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    Locked,
    connect,
    open_writer,
)
from storage.readings.sqlite_table import (
    COLUMNS,
    HISTORY,
    HISTORY_BRIEF,
    LATEST,
    LATEST_VALID,
    MEAL,
    PRUNE,
    PRUNE_NO_PATIENT,
    ROWS_PER_INSERT,
    MeterKeys,
    insert_rows,
    meal_of,
    reading_row,
)
from vitals.readings import ReadingKind

logger = logging.getLogger(__name__)


# Rows deleted per transaction when pruning readings past their retention (`prune`).
PRUNE_BATCH: Final = 5_000
# Rows per `reading_id IN (...)` probe; well under SQLite's default 32766 bound parameters.
_PROBE_CHUNK: Final = 900


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
        self._writer = open_writer(self.path, synchronous, busy_timeout_ms, open_timeout_s)
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint_pages)}")
        self._writer.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        parameters = self._writer.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = tuple(n for n in ROWS_PER_INSERT if n * len(COLUMNS) <= parameters)

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = connect(self.path, self._synchronous, self._busy_timeout_ms)
            except Locked as exc:
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
                insert_rows(conn, new, self._rows_per_insert)
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
                        LATEST_VALID if valid_only else LATEST, (patient_id, each.value)
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
        # column: found with `MEAL` (json_extract, parsing each document, costs three times more).
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
                found.group(1) if (found := MEAL.search(text)) else None for text in documents
            )
        return columns

    def history_columns(
        self, patient_ids: Sequence[str], start: datetime, end: datetime, *, details: bool = True
    ) -> HistoryColumns:
        """One indexed range query per patient for both kinds (`HISTORY`, `HISTORY_BRIEF`). Numbers
        come from their columns; the meal, which has no column, is cut out of the stored JSON by
        SQLite: only the documents of readings left out of averages cross into Python whole."""
        low = utc_text(check_aware(start, "start"))
        high = utc_text(check_aware(end, "end"))
        columns = HistoryColumns()
        kinds = {kind.value: kind for kind in ReadingKind}
        with self._errors("history query"):
            conn = self._reader()
            for patient_id in dict.fromkeys(check_patient_id(p) for p in patient_ids):
                rows = conn.execute(HISTORY if details else HISTORY_BRIEF, (patient_id, low, high)).fetchall()
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
                columns.meal.extend([meal_of(cut) for cut in meal])
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

    def prune(
        self,
        before: datetime | None,
        *,
        patients: Mapping[str, datetime] | None = None,
        batch: int = PRUNE_BATCH,
    ) -> int:
        """Delete every reading measured before its cut-off; how many. A patient in `patients` has
        their own (their clinic's period: storage.clinic.readings_retention); every other patient,
        and readings of no patient, `before` (None: kept).

        Patient by patient and kind by kind through the (patient_id, kind, measured_at) index, the
        patients found by seeking the index from one to the next, so no pass reads the whole table;
        each transaction deletes at most `batch` rows, so ingest's writes wait at most that long. The
        freed pages are reused by later writes (the file does not shrink)."""
        own = {pid: utc_text(check_aware(at, "patients")) for pid, at in (patients or {}).items()}
        default = None if before is None else utc_text(check_aware(before, "before"))
        deleted = 0
        for patient_id in [None, *self._patients()]:
            cutoff = default if patient_id is None else own.get(patient_id, default)
            if cutoff is None:
                continue
            for kind in ReadingKind:
                while True:
                    with self._write_lock, self._errors("prune"):
                        self._check_open()
                        conn = self._writer
                        conn.execute("BEGIN IMMEDIATE")
                        try:
                            cursor = conn.execute(
                                PRUNE_NO_PATIENT if patient_id is None else PRUNE,
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
