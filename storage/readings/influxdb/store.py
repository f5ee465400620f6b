"""`InfluxReadingStore`: the `ReadingStore` protocol on InfluxDB (1.8+, 2.x with a DBRP mapping, 3.x):
duplicate-aware batch writes, range and latest reads, chart columns and daily aggregates."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final

from storage.readings.influxdb.connection import STATEMENTS_PER_QUERY, InfluxConfig, InfluxConnection
from storage.readings.influxdb.influxql import patient_clause, quote_ident, second_floor_ns
from storage.readings.influxdb.points import (
    BLOOD_PRESSURE_FIELDS,
    COMMON_FIELDS,
    CONTINUOUS_FIELD,
    GLUCOSE_FIELDS,
    IRREGULAR_PULSE_FIELD,
    JSON_FIELD,
    NS_PER_S,
    line_protocol,
    point_time_ns,
)
from storage.readings.influxdb.provisioning import ensure_database
from storage.readings.protocol import (
    AnyReading,
    DailyAggregate,
    HistoryColumns,
    ReadingColumns,
    ReadingStoreError,
    WriteResult,
)
from storage.readings.records import (
    AGGREGATED_METRICS,
    AggregateRow,
    aggregate_daily,
    check_aware,
    check_patient_id,
    day_window,
    epoch_us,
    from_epoch_us,
    reading_from_json,
    sort_key,
)
from vitals.readings import ReadingKind

logger = logging.getLogger(__name__)

# Patients per history statement (`history_columns`): one series each in the answer.
HISTORY_PATIENTS_PER_STATEMENT: Final = 100
# Points per page of a range read: what one request holds in memory, and what `limit` reads at most
# beyond the readings asked for.
RANGE_PAGE_POINTS: Final = 5_000


class InfluxReadingStore:
    """`ReadingStore` on InfluxDB (1.8+, 2.x with a DBRP mapping, 3.x). Thread-safe."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self._connection = InfluxConnection(
            config, whole_point_fields=frozenset((*COMMON_FIELDS, JSON_FIELD))
        )

    # -- writes ---------------------------------------------------------------------------------

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if self._connection.closed:
            raise ReadingStoreError("reading store is closed")
        first: dict[str, AnyReading] = {}
        for reading in readings:
            first.setdefault(reading.reading_id, reading)
        present = self._present(list(first.values())) if self.config.check_duplicates else set()
        to_write = [r for rid, r in first.items() if rid not in present]
        size = self.config.max_points_per_request
        for i in range(0, len(to_write), size):
            self._connection.write_lines([line_protocol(r) for r in to_write[i : i + size]])
        stored: list[str] = []
        duplicates: list[str] = []
        seen: set[str] = set()
        for reading in readings:
            rid = reading.reading_id
            if rid in present or rid in seen:
                duplicates.append(rid)
            else:
                stored.append(rid)
            seen.add(rid)
        logger.debug(
            "reading batch written",
            extra={"stored": len(stored), "duplicates": len(duplicates), "store": "influxdb"},
        )
        return WriteResult(stored=tuple(stored), duplicates=tuple(duplicates))

    def _present(self, readings: Sequence[AnyReading]) -> set[str]:
        """reading_ids of `readings` already stored: one window query per (kind, patient)."""
        # Runs for every reading ingest writes: one pass, the point times grouped, bounds at the end.
        windows: dict[tuple[ReadingKind, str | None], list[int]] = {}
        wanted: set[str] = set()
        for reading in readings:
            windows.setdefault((reading.kind, reading.patient_id), []).append(point_time_ns(reading))
            wanted.add(reading.reading_id)
        statements = [
            f"SELECT {quote_ident('reading_id')} FROM {quote_ident(kind.value)} WHERE {patient_clause(patient)} "  # noqa: S608 - quoted idents/literals
            f"AND time >= {min(times)} AND time <= {max(times)}"
            for (kind, patient), times in windows.items()
        ]
        present: set[str] = set()
        for i in range(0, len(statements), STATEMENTS_PER_QUERY):
            chunk = statements[i : i + STATEMENTS_PER_QUERY]
            for rows in self._connection.query(chunk):
                present.update(row["reading_id"] for row in rows if row.get("reading_id") in wanted)
        return present

    # -- reads ----------------------------------------------------------------------------------

    def _window_statement(
        self, fields: Iterable[str], kind: ReadingKind, patient_id: str, start: datetime, end: datetime
    ) -> str:
        """Points whose measured_at may lie in [start, end): whole seconds, exact filter later."""
        low = second_floor_ns(start)
        high = second_floor_ns(end) + NS_PER_S
        columns = ", ".join(quote_ident(f) for f in fields)
        return (
            f"SELECT {columns} FROM {quote_ident(kind.value)} WHERE {patient_clause(patient_id)} "  # noqa: S608 - quoted idents/literals
            f"AND time >= {low} AND time < {high}"
        )

    def query_range(
        self,
        patient_id: str,
        kind: ReadingKind,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> list[AnyReading]:
        """Read in pages of at most RANGE_PAGE_POINTS points in time order (`ORDER BY time LIMIT`, the
        next page after the last point's time), so no answer meets InfluxDB's max-row-limit, and
        stop once `limit` readings are in hand and the second of the last of them is read whole: a
        point's time orders readings by their second, and within one second by a hash
        (`point_time_ns`), so only a whole second can be put in measured_at order."""
        check_patient_id(patient_id)
        start, end = check_aware(start, "start"), check_aware(end, "end")
        low_us, high_us = epoch_us(start), epoch_us(end)
        base = self._window_statement(
            ("measured_at_us", "reading_id", JSON_FIELD), ReadingKind(kind), patient_id, start, end
        )
        page_points = RANGE_PAGE_POINTS if limit is None else min(RANGE_PAGE_POINTS, limit)
        rows: list[dict[str, Any]] = []
        in_range = 0
        after_ns: int | None = None  # read points after this time; None: from the window's start
        last_second_end: int | None = None  # set: only this second remains to be read
        while True:
            bounds = "" if after_ns is None else f" AND time > {after_ns}"
            if last_second_end is not None:
                bounds += f" AND time < {last_second_end}"
            (page,) = self._connection.query([f"{base}{bounds} ORDER BY time ASC LIMIT {page_points}"])
            rows.extend(page)
            in_range += sum(1 for row in page if low_us <= int(row["measured_at_us"]) < high_us)
            if len(page) < page_points:
                break
            after_ns = int(page[-1]["time"])
            if last_second_end is None and limit is not None and in_range >= limit:
                last_second_end = (after_ns // NS_PER_S + 1) * NS_PER_S
        readings = _unique_readings(row for row in rows if low_us <= int(row["measured_at_us"]) < high_us)
        return readings if limit is None else readings[:limit]

    def latest(
        self, patient_id: str, kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> AnyReading | None:
        return self.latest_by_patient([patient_id], kind, valid_only=valid_only).get(patient_id)

    def latest_by_patient(
        self, patient_ids: Sequence[str], kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> dict[str, AnyReading]:
        """Two InfluxQL requests whatever the number of patients (statements chunked)."""
        patients = list(dict.fromkeys(check_patient_id(p) for p in patient_ids))
        kinds = list(ReadingKind) if kind is None else [ReadingKind(kind)]
        validity = ' AND "valid" = true' if valid_only else ""
        pairs = [(p, k) for p in patients for k in kinds]
        last = self._connection.query_chunked(
            [
                f"SELECT {quote_ident('reading_id')} FROM {quote_ident(k.value)} WHERE {patient_clause(p)}"  # noqa: S608 - quoted idents/literals
                f"{validity} ORDER BY time DESC LIMIT 1"
                for p, k in pairs
            ]
        )
        # The last point's second may hold other readings whose measured_at is later than its own
        # (the sub-second offset is a hash): read that whole second and pick by measured_at.
        statements = []
        for (p, k), rows in zip(pairs, last, strict=True):
            if rows:
                second = (int(rows[0]["time"]) // NS_PER_S) * NS_PER_S
                statements.append(
                    f"SELECT {quote_ident('measured_at_us')}, {quote_ident('reading_id')}, {quote_ident(JSON_FIELD)} "  # noqa: S608 - quoted idents/literals
                    f"FROM {quote_ident(k.value)} WHERE {patient_clause(p)}{validity} "
                    f"AND time >= {second} AND time < {second + NS_PER_S}"
                )
        best: dict[str, tuple[tuple[int, str], str]] = {}
        for rows in self._connection.query_chunked(statements):
            for row in rows:
                reading = reading_from_json(row[JSON_FIELD])
                key = (int(row["measured_at_us"]), str(row["reading_id"]))
                patient = reading.patient_id or ""
                if patient not in best or key > best[patient][0]:
                    best[patient] = (key, row[JSON_FIELD])
        return {patient: reading_from_json(text) for patient, (_, text) in best.items()}

    def reading_columns(
        self, patient_id: str, kind: ReadingKind, start: datetime, end: datetime
    ) -> ReadingColumns:
        """Two statements in one request: the numeric fields of every point, and the whole reading of
        the points left out of averages (their reasons)."""
        check_patient_id(patient_id)
        kind = ReadingKind(kind)
        start, end = check_aware(start, "start"), check_aware(end, "end")
        low_us, high_us = epoch_us(start), epoch_us(end)
        fields = BLOOD_PRESSURE_FIELDS if kind is ReadingKind.BLOOD_PRESSURE else GLUCOSE_FIELDS
        numbers = self._window_statement(
            ("measured_at_us", "reading_id", "in_averages", *fields), kind, patient_id, start, end
        )
        left_out = (
            self._window_statement(("reading_id", JSON_FIELD), kind, patient_id, start, end)
            + ' AND "in_averages" = false'
        )
        rows, left_rows = self._connection.query([numbers, left_out])
        whole = {str(row["reading_id"]): row[JSON_FIELD] for row in left_rows}
        chosen: dict[str, dict[str, Any]] = {}
        for row in rows:
            if low_us <= int(row["measured_at_us"]) < high_us:
                chosen[str(row["reading_id"])] = row
        ordered = sorted(
            chosen.values(), key=lambda row: (int(row["measured_at_us"]), str(row["reading_id"]))
        )
        columns = ReadingColumns(kind)
        for row in ordered:
            included = bool(row["in_averages"])
            columns.measured_at_us.append(int(row["measured_at_us"]))
            columns.in_averages.append(included)
            text = None if included else whole.get(str(row["reading_id"]))
            columns.left_out.append(None if text is None else reading_from_json(text))
            if kind is ReadingKind.BLOOD_PRESSURE:
                columns.systolic_mmhg.append(_float(row.get("systolic_mmhg")))
                columns.diastolic_mmhg.append(_float(row.get("diastolic_mmhg")))
                columns.pulse_bpm.append(_float(row.get("pulse_bpm")))
            else:
                columns.glucose_mg_dl.append(_float(row.get("glucose_mg_dl")))
                meal = row.get("meal")
                columns.meal.append(None if meal is None else str(meal))
        return columns

    def history_columns(
        self, patient_ids: Sequence[str], start: datetime, end: datetime, *, details: bool = True
    ) -> HistoryColumns:
        """One statement per kind for up to HISTORY_PATIENTS_PER_STATEMENT patients, grouped by
        patient (InfluxDB answers one series per patient), and with `details` one more for the whole
        readings left out of averages (their reasons)."""
        start, end = check_aware(start, "start"), check_aware(end, "end")
        low_us, high_us = epoch_us(start), epoch_us(end)
        low, high = second_floor_ns(start), second_floor_ns(end) + NS_PER_S
        patients = list(dict.fromkeys(check_patient_id(p) for p in patient_ids))
        common = ("measured_at_us", "reading_id", "in_averages")
        fields = {
            ReadingKind.BLOOD_PRESSURE: (*common, "systolic_mmhg", "diastolic_mmhg")
            + (("pulse_bpm", IRREGULAR_PULSE_FIELD) if details else ()),
            ReadingKind.GLUCOSE: (*common, *GLUCOSE_FIELDS, CONTINUOUS_FIELD),
        }
        measurements = (
            f"{quote_ident(ReadingKind.BLOOD_PRESSURE.value)}, {quote_ident(ReadingKind.GLUCOSE.value)}"
        )
        statements: list[str] = []
        groups = [
            patients[i : i + HISTORY_PATIENTS_PER_STATEMENT]
            for i in range(0, len(patients), HISTORY_PATIENTS_PER_STATEMENT)
        ]
        for group in groups:
            who = " OR ".join(patient_clause(p) for p in group)
            window = f"WHERE ({who}) AND time >= {low} AND time < {high}"
            for kind, names in fields.items():
                selected = ", ".join(quote_ident(f) for f in names)
                statement = f"SELECT {selected} FROM {quote_ident(kind.value)} {window} GROUP BY "  # noqa: S608 - quoted idents/literals
                statements.append(statement + '"patient_id"')
            if details:
                statements.append(
                    f"SELECT {quote_ident('reading_id')}, {quote_ident(JSON_FIELD)} FROM {measurements} "  # noqa: S608 - quoted idents/literals
                    f'{window} AND "in_averages" = false'
                )
        per_group = 3 if details else 2
        answers = self._connection.query_chunked(statements)
        chosen: dict[str, dict[str, tuple[ReadingKind, dict[str, Any]]]] = {p: {} for p in patients}
        whole: dict[str, str] = {}
        for g in range(len(groups)):
            bp_rows, glucose_rows, *left = answers[per_group * g : per_group * (g + 1)]
            for kind, rows in ((ReadingKind.BLOOD_PRESSURE, bp_rows), (ReadingKind.GLUCOSE, glucose_rows)):
                for row in rows:
                    if low_us <= int(row["measured_at_us"]) < high_us:
                        chosen[str(row["patient_id"])][str(row["reading_id"])] = (kind, row)
            for row in left[0] if left else ():
                whole[str(row["reading_id"])] = row[JSON_FIELD]
        columns = HistoryColumns()
        for patient in patients:
            for reading_id, (kind, row) in sorted(
                chosen[patient].items(), key=lambda item: (int(item[1][1]["measured_at_us"]), item[0])
            ):
                included = bool(row["in_averages"])
                meal = row.get("meal")
                columns.patient_id.append(patient)
                columns.kind.append(kind)
                columns.measured_at_us.append(int(row["measured_at_us"]))
                columns.in_averages.append(included)
                columns.systolic_mmhg.append(_float(row.get("systolic_mmhg")))
                columns.diastolic_mmhg.append(_float(row.get("diastolic_mmhg")))
                columns.glucose_mg_dl.append(_float(row.get("glucose_mg_dl")))
                columns.meal.append(None if meal is None else str(meal))
                columns.continuous.append(row.get(CONTINUOUS_FIELD) is True)
                if details:
                    text = None if included else whole.get(reading_id)
                    columns.reading_id.append(reading_id)
                    columns.pulse_bpm.append(_float(row.get("pulse_bpm")))
                    columns.irregular_pulse.append(row.get(IRREGULAR_PULSE_FIELD) is True)
                    columns.left_out.append(None if text is None else reading_from_json(text))
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
        low_us, high_us = epoch_us(start), epoch_us(end)
        metrics = AGGREGATED_METRICS[kind]
        (rows,) = self._connection.query(
            [
                self._window_statement(
                    ("measured_at_us", "in_averages", *metrics), kind, patient_id, start, end
                )
            ]
        )
        return aggregate_daily(
            patient_id,
            kind,
            (
                AggregateRow(
                    measured_at=from_epoch_us(int(row["measured_at_us"])),
                    included=bool(row["in_averages"]),
                    values={m: row.get(m) for m in metrics},
                )
                for row in rows
                if low_us <= int(row["measured_at_us"]) < high_us
            ),
            tz,
        )

    # -- retention ------------------------------------------------------------------------------

    def delete_before(self, cutoffs: Mapping[str | None, datetime]) -> int:
        """Delete each patient's readings (None: readings of no patient) measured before their
        cut-off, where the retention policy keeps them longer (a clinic with a shorter period of its
        own: storage.clinic.readings_retention); how many went.

        Patients sharing a cut-off (one clinic's, or the deployment's) go together: per kind, one
        count and at most one DELETE for each HISTORY_PATIENTS_PER_STATEMENT of them, their patient
        clauses OR-ed, and a DELETE only where the count found something. By whole seconds: a
        point's time is its reading's second plus a per-reading offset below a second
        (`point_time_ns`), so the readings of the cut-off's own second stay, at most a second
        longer. InfluxQL `DELETE FROM <measurement> WHERE <tag> = '<value>' AND time < <time>` on
        /query, as InfluxDB 1.x serves it and 2.x through its DBRP mapping ("Manage your data using
        InfluxQL", docs.influxdata.com/influxdb/v2/query-data/influxql/manage-data/); InfluxDB 3
        deletes no points, only whole tables or databases."""
        by_bound: dict[int, list[str | None]] = {}
        for patient_id, at in cutoffs.items():
            by_bound.setdefault(second_floor_ns(check_aware(at, "cutoffs")), []).append(patient_id)
        targets: list[tuple[ReadingKind, str]] = []
        for bound, patients in by_bound.items():
            for i in range(0, len(patients), HISTORY_PATIENTS_PER_STATEMENT):
                who = " OR ".join(patient_clause(p) for p in patients[i : i + HISTORY_PATIENTS_PER_STATEMENT])
                targets += [(kind, f"({who}) AND time < {bound}") for kind in ReadingKind]
        counts = self._connection.query_chunked(
            [
                f"SELECT count({quote_ident('reading_id')}) FROM {quote_ident(kind.value)} WHERE {where}"  # noqa: S608 - quoted idents/literals
                for kind, where in targets
            ]
        )
        deletes: list[str] = []
        deleted = 0
        for (kind, where), rows in zip(targets, counts, strict=True):
            found = sum(int(row.get("count") or 0) for row in rows)
            if found:
                deleted += found
                deletes.append(f"DELETE FROM {quote_ident(kind.value)} WHERE {where}")  # noqa: S608 - quoted idents/literals
        self._connection.query_chunked(deletes)
        if deleted:
            logger.info("readings past retention deleted", extra={"readings": deleted, "store": "influxdb"})
        return deleted

    # -- setting up ------------------------------------------------------------------------------

    def ensure_database(self, retention: timedelta | None) -> str:
        """InfluxDB 1.x: the database and its default retention policy (see `ensure_database`)."""
        return ensure_database(self._connection, retention)

    def close(self) -> None:
        self._connection.close()


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _unique_readings(rows: Iterable[Mapping[str, Any]]) -> list[AnyReading]:
    by_id: dict[str, AnyReading] = {}
    for row in rows:
        reading = reading_from_json(row[JSON_FIELD])
        by_id.setdefault(reading.reading_id, reading)
    return sorted(by_id.values(), key=sort_key)
