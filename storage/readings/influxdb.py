"""InfluxDB reading store: the production store (DESIGN.md, Storage).

Writes go through influxdb-client's v2 write API with `SYNCHRONOUS` write options, one HTTP request
per chunk of at most 5,000 points, and our own bounded retries. Never the client's default batching
mode: a batch that fails there is logged, handed to `error_callback` and dropped, and `flush()` is a
no-op (reliability.md §3, influxdb-client `write_api.py` L388-391, L536-558). Clinical readings must
not vanish, so `write_batch` returns only after InfluxDB answered 204 for every chunk, and raises a
typed error otherwise; ingest then does not ack and the gateway resends.

Reads are InfluxQL on the v1-compatible `/query` endpoint, which InfluxDB 1.8+, 2.x (with a DBRP
mapping: `ensure_dbrp_mapping`) and 3.x all serve (reliability.md §3).

Point design (docs/storage-schema.md has the full schema):
- measurement = the reading kind (`blood_pressure`, `glucose`); the only tag is `patient_id`.
  InfluxDB replaces a point with the same measurement, tag set and timestamp ("InfluxDB creates a
  union of the old and new field sets", reliability.md §3), so a rewrite of a reading must produce
  exactly the same measurement, tags and timestamp. Tags that could change between retransmissions
  (validity, units) are fields, so they can never split a reading into two series.
- `reading_id` is NOT a tag: one series per reading would make the series index grow with every
  measurement (unbounded cardinality, the classic InfluxDB 1.x/2.x memory problem).
- timestamp = measured_at truncated to the whole second, plus a nanosecond offset in [0, 1e9)
  derived from the reading_id's hash. Two different readings of one patient and kind in the same
  second (two meters, or a meter whose clock has second resolution) therefore land on different
  timestamps unless their ids collide modulo 1e9 (chance 1e-9 per pair), instead of silently
  overwriting each other. The exact measured_at is kept in the integer field `measured_at_us`, and
  queries widen their time window to whole seconds and filter on that field.

"Newly stored vs duplicate": InfluxDB does not say whether a write replaced a point. With
`check_duplicates` (the default) the store asks first, in one multi-statement InfluxQL request per
batch, which of the batch's reading_ids already exist in the affected (patient, kind, seconds)
windows, writes only the absent ones, and reports the present ones as duplicates. This is exact for
one writer. With concurrent writers of the same reading (two ingest replicas receiving a
redelivery at once), both may report it as new: the data stays correct (the second write replaces
the identical point) and only the "new" counter over-counts. If a write attempt failed after InfluxDB
had in fact stored some points, the caller's retry reports those as duplicates: again only the
counter is off, never the data.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from storage.readings.protocol import (
    AnyReading,
    DailyAggregate,
    HistoryColumns,
    ReadingColumns,
    ReadingStoreError,
    ReadingStoreRejected,
    ReadingStoreUnavailable,
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
    in_averages,
    reading_from_json,
    reading_to_json,
    sort_key,
)
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    ReadingKind,
    SampleLocation,
    SampleType,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

NS_PER_S: Final = 1_000_000_000
NS_PER_US: Final = 1_000
# Server guidance: "points in batches of 5,000 to 10,000 for optimal performance" (InfluxDB v1 API
# docs; maintainers: at most 10,000, influxdb#2379; up to 5,000, influxdb#3601; reliability.md §3).
DEFAULT_MAX_POINTS_PER_REQUEST: Final = 5_000
# Patients per history statement (`history_columns`): one series each in the answer.
HISTORY_PATIENTS_PER_STATEMENT: Final = 100
# Statements per duplicate-check request, so the form body stays small.
_STATEMENTS_PER_QUERY: Final = 200
# Points per page of a range read: what one request holds in memory, and what `limit` reads at most
# beyond the readings asked for.
RANGE_PAGE_POINTS: Final = 5_000
# Points per chunk of a chunked query answer (InfluxDB's own default chunk size).
QUERY_CHUNK_POINTS: Final = 10_000
# Hex digits of the reading_id hashed into the sub-second timestamp offset (64 bits).
_TIEBREAK_HEX_DIGITS: Final = 16
_MAX_RETRY_DELAY_S: Final = 10.0
_HTTP_RETRYABLE_MIN: Final = 500
_HTTP_TOO_MANY_REQUESTS: Final = 429
_HTTP_BAD_REQUEST: Final = 400
_HTTP_OK: Final = 200

_JSON_FIELD: Final = "reading_json"
_NS_PRECISION: Final = cast(WritePrecision, WritePrecision.NS)  # the client annotates its enum as str


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where and how to reach InfluxDB. The composition root maps Settings.storage onto this.

    - url: base URL serving `/api/v2/write` and `/query` (`query_url` overrides it for reads).
    - database / retention_policy: the InfluxQL (v1) names reads use. On 2.x they must be mapped to
      the bucket (`ensure_dbrp_mapping`); on 3.x the database is the bucket's name.
    - bucket: what writes name; default `database/retention_policy`, the InfluxDB 1.8 form
      ("bucket = f'{database}/{retention_policy}'", reliability.md §3). On 2.x give the bucket name.
    - token: 2.x/3.x API token, or `username:password` on 1.8 with auth enabled; sent as
      `Authorization: Token ...` on writes and reads. Empty = no auth (a loopback 1.x in tests).
    - org: 2.x organisation; "-" for 1.8 and 3.x.
    """

    url: str
    database: str
    retention_policy: str = "autogen"
    bucket: str | None = None
    token: str = ""
    org: str = "-"
    query_url: str | None = None
    timeout_s: float = 10.0
    write_attempts: int = 3
    # Reads (charts, latest values, the duplicate probe) are retried too, fewer times: a doctor
    # waits for them.
    read_attempts: int = 2
    retry_backoff_s: float = 0.5
    max_points_per_request: int = DEFAULT_MAX_POINTS_PER_REQUEST
    check_duplicates: bool = True

    @property
    def write_bucket(self) -> str:
        if self.bucket:
            return self.bucket
        return f"{self.database}/{self.retention_policy}"


# -- the point of one reading (pure) --------------------------------------------------------------


def point_time_ns(reading: AnyReading) -> int:
    """measured_at's whole second, plus a per-reading offset in [0, 1 s) from the reading_id."""
    return (epoch_us(reading.measured_at) // 1_000_000) * NS_PER_S + _tiebreak_ns(reading.reading_id)


# The point's fields (docs/storage-schema.md, "Fields"). The whole reading is the string field
# `reading_json`, which every read returns; beside it only what InfluxQL itself needs: the duplicate
# probe's `reading_id`, the exact time, the flags the aggregates and `valid_only` filter on, and the
# values in canonical units that daily aggregates (AGGREGATED_METRICS) and Grafana average. influxd's
# CPU grows with the fields per point, and influxd shares the gateway's or clinic's cores with ingest,
# so a point carries nothing that only a read of `reading_json` needs.
BLOOD_PRESSURE_FIELDS: Final = ("systolic_mmhg", "diastolic_mmhg", "mean_arterial_mmhg", "pulse_bpm")
GLUCOSE_FIELDS: Final = ("glucose_mg_dl", "meal")
COMMON_FIELDS: Final = ("reading_id", "measured_at_us", "valid", "in_averages")
# Flags the alert rules read of every reading (`history_columns`), written only when true (absent:
# false), so the common reading carries no extra field: a blood pressure with an irregular pulse, a
# glucose from a continuous monitor (interstitial fluid or subcutaneous tissue).
IRREGULAR_PULSE_FIELD: Final = "irregular_pulse"
CONTINUOUS_FIELD: Final = "continuous"


def line_protocol(reading: AnyReading) -> str:
    """The reading's point as one line of InfluxDB line protocol (nanosecond timestamp).

    Escaping per the line protocol reference: measurement, tag keys/values and field keys escape
    commas, spaces (and, except the measurement, equals signs); string field values escape
    backslashes and double quotes. Line protocol has no newline escape, and needs none: the only
    free text is reading_json, compact JSON, which never contains a raw line break.

    Fields: COMMON_FIELDS, then the kind's (BLOOD_PRESSURE_FIELDS or GLUCOSE_FIELDS) where the
    reading has a value, then `reading_json`. Numbers are always floats (`i` for the integer
    `measured_at_us`), so no field type conflict can arise between readings.
    """
    head = _MEASUREMENTS[reading.kind]
    if reading.patient_id is not None:
        head += ",patient_id=" + _escape_key(reading.patient_id)
    measured_at_us = epoch_us(reading.measured_at)
    fields = [
        f'reading_id="{reading.reading_id}"',  # 32 hex digits (vitals.readings): nothing to escape
        f"measured_at_us={measured_at_us}i",
        "valid=true" if reading.valid else "valid=false",
        "in_averages=true" if in_averages(reading) else "in_averages=false",
    ]
    if isinstance(reading, BloodPressureReading):
        _add_float(fields, "systolic_mmhg", reading.systolic_mmhg)
        _add_float(fields, "diastolic_mmhg", reading.diastolic_mmhg)
        _add_float(fields, "mean_arterial_mmhg", reading.mean_arterial_mmhg)
        _add_float(fields, "pulse_bpm", reading.pulse_bpm)
        if BloodPressureStatus.IRREGULAR_PULSE in reading.measurement_status:
            fields.append(f"{IRREGULAR_PULSE_FIELD}=true")
    else:
        _add_float(fields, "glucose_mg_dl", reading.glucose_mg_dl)
        if reading.context is not None and reading.context.meal is not None:
            fields.append(f'meal="{reading.context.meal.value}"')  # a Meal value: nothing to escape
        if (
            reading.sample_type is SampleType.INTERSTITIAL_FLUID
            or reading.sample_location is SampleLocation.SUBCUTANEOUS_TISSUE
        ):
            fields.append(f"{CONTINUOUS_FIELD}=true")
    reading_json = reading_to_json(reading)
    # JSON escapes every control character itself (RFC 8259 §7), so only `\` and `"` remain.
    fields.append(f'{_JSON_FIELD}="{_json_string(reading_json)}"')
    time_ns = (measured_at_us // 1_000_000) * NS_PER_S + _tiebreak_ns(reading.reading_id)
    return f"{head} {','.join(fields)} {time_ns}"


_MEASUREMENTS: Final = {kind: kind.value.replace(",", "\\,").replace(" ", "\\ ") for kind in ReadingKind}


def _tiebreak_ns(reading_id: str) -> int:
    return int(reading_id[:_TIEBREAK_HEX_DIGITS], 16) % NS_PER_S


def _json_string(text: str) -> str:
    """Compact JSON as a string field value (the quotes around it are the caller's): JSON holds no
    raw line break, so escaping backslashes and double quotes is all line protocol needs."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _add_float(fields: list[str], name: str, value: float | None) -> None:
    """Finite values only (InfluxDB has no NaN), always written as a float, never an int (which
    would be a field type conflict with the earlier points)."""
    if value is not None and math.isfinite(value):
        fields.append(f"{name}={float(value)!r}")


def _escape_key(text: str, *, measurement: bool = False) -> str:
    # Our keys are fixed names, kind values and patient ids ([A-Za-z0-9_-]): never a backslash.
    text = text.replace(",", "\\,").replace(" ", "\\ ")
    return text if measurement else text.replace("=", "\\=")


# -- InfluxQL helpers ------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _patient_clause(patient_id: str | None) -> str:
    # A missing tag compares equal to '' in InfluxQL, which selects readings without a patient.
    return f'"patient_id" = {_literal(patient_id or "")}'


def _second_floor_ns(moment: datetime) -> int:
    return (epoch_us(moment) // 1_000_000) * NS_PER_S


class InfluxReadingStore:
    """`ReadingStore` on InfluxDB (1.8+, 2.x with a DBRP mapping, 3.x). Thread-safe."""

    def __init__(self, config: InfluxConfig) -> None:
        if config.write_attempts < 1 or config.read_attempts < 1:
            raise ValueError("write_attempts and read_attempts must be at least 1")
        if not 1 <= config.max_points_per_request <= 10_000:
            raise ValueError("max_points_per_request must be 1..10000 (InfluxDB batch guidance)")
        self.config = config
        self._closing = threading.Event()
        # retries=False in urllib3: we retry ourselves, with typed errors (no hidden waits).
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token,
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            enable_gzip=False,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=config.timeout_s, read=config.timeout_s), retries=False
        )
        self._query_url = (config.query_url or config.url).rstrip("/") + "/query"

    # -- writes ---------------------------------------------------------------------------------

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        if self._closing.is_set():
            raise ReadingStoreError("reading store is closed")
        first: dict[str, AnyReading] = {}
        for reading in readings:
            first.setdefault(reading.reading_id, reading)
        present = self._present(list(first.values())) if self.config.check_duplicates else set()
        to_write = [r for rid, r in first.items() if rid not in present]
        size = self.config.max_points_per_request
        for i in range(0, len(to_write), size):
            self._write_chunk([line_protocol(r) for r in to_write[i : i + size]])
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

    def _write_chunk(self, lines: list[str]) -> None:
        body = "\n".join(lines).encode("utf-8")

        def attempt() -> None:
            try:
                self._write_api.write(
                    bucket=self.config.write_bucket,
                    org=self.config.org,
                    record=body,
                    write_precision=_NS_PRECISION,
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == _HTTP_BAD_REQUEST:
                    raise ReadingStoreRejected(
                        f"InfluxDB refused the batch (HTTP 400): {_body(exc)}"
                    ) from exc
                if status >= _HTTP_RETRYABLE_MIN or status == _HTTP_TOO_MANY_REQUESTS:
                    raise _Transient(f"HTTP {status}: {_body(exc)}") from exc
                raise ReadingStoreUnavailable(f"InfluxDB write failed: HTTP {status}: {_body(exc)}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc

        self._retrying("write", attempt, self.config.write_attempts, points=len(lines))

    def _retrying(self, what: str, attempt: Callable[[], _T], attempts: int, **log_extra: object) -> _T:
        """Run `attempt`, retrying transient failures (connection errors, HTTP 5xx and 429) with
        exponential backoff, `attempts` times in all; then raise ReadingStoreUnavailable.

        The influxdb-client's own retry machinery belongs to its batching mode (reliability.md §3),
        so with SYNCHRONOUS writes the retries are ours, explicit and bounded. The wait is an Event,
        so close() cuts it short.
        """
        for number in range(1, attempts + 1):
            try:
                return attempt()
            except _Transient as exc:
                if number == attempts:
                    raise ReadingStoreUnavailable(
                        f"InfluxDB {what} failed after {number} attempt(s): {exc}"
                    ) from exc
                delay = min(self.config.retry_backoff_s * 2 ** (number - 1), _MAX_RETRY_DELAY_S)
                logger.warning(
                    "InfluxDB %s failed, retrying",
                    what,
                    extra={"attempt": number, "delay_s": delay, "reason": str(exc), **log_extra},
                )
                if self._closing.wait(delay):
                    raise ReadingStoreUnavailable(f"reading store closed while retrying a {what}") from exc
        raise AssertionError("unreachable")

    def _present(self, readings: Sequence[AnyReading]) -> set[str]:
        """reading_ids of `readings` already stored: one window query per (kind, patient)."""
        # Runs for every reading ingest writes: one pass, the point times grouped, bounds at the end.
        windows: dict[tuple[ReadingKind, str | None], list[int]] = {}
        wanted: set[str] = set()
        for reading in readings:
            windows.setdefault((reading.kind, reading.patient_id), []).append(point_time_ns(reading))
            wanted.add(reading.reading_id)
        statements = [
            f"SELECT {_ident('reading_id')} FROM {_ident(kind.value)} WHERE {_patient_clause(patient)} "  # noqa: S608 - quoted idents/literals
            f"AND time >= {min(times)} AND time <= {max(times)}"
            for (kind, patient), times in windows.items()
        ]
        present: set[str] = set()
        for i in range(0, len(statements), _STATEMENTS_PER_QUERY):
            chunk = statements[i : i + _STATEMENTS_PER_QUERY]
            for rows in self._query(chunk):
                present.update(row["reading_id"] for row in rows if row.get("reading_id") in wanted)
        return present

    # -- reads ----------------------------------------------------------------------------------

    def _query(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Run InfluxQL statements in one request; rows of each statement as dicts (time in ns).
        A transient failure is retried (`read_attempts` in all), as writes are."""
        return self._retrying(
            "query", functools.partial(self._query_once, statements), self.config.read_attempts
        )

    def _query_once(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        if self._closing.is_set():
            raise ReadingStoreError("reading store is closed")
        # Chunked answers: InfluxDB 1.x applies `max-row-limit` to non-chunked queries only, and
        # marks a series longer than its chunk size `partial` in a non-chunked answer; chunked, the
        # answer streams whole as newline-separated JSON documents (InfluxDB 1.x HTTP API, /query
        # `chunked`, `chunk_size`; docs/references.md#ref-influxdb-query). A patient measuring
        # continuously holds more points in the alert look-back than one non-chunked answer carries.
        params = {
            "db": self.config.database,
            "epoch": "ns",
            "q": ";".join(statements),
            "chunked": "true",
            "chunk_size": str(QUERY_CHUNK_POINTS),
        }
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Token {self.config.token}"
        try:
            response = self._http.request(
                "POST", self._query_url, body=urlencode(params), headers=headers, redirect=False
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Transient(f"InfluxDB query failed: {type(exc).__name__}: {exc}") from exc
        if response.status != _HTTP_OK:
            text = response.data[:500].decode("utf-8", "replace")
            if response.status >= _HTTP_RETRYABLE_MIN or response.status == _HTTP_TOO_MANY_REQUESTS:
                raise _Transient(f"InfluxDB query failed: HTTP {response.status}: {text}")
            if response.status in (401, 403, 404):  # configuration (token, database): not the data
                raise ReadingStoreUnavailable(f"InfluxDB query failed: HTTP {response.status}: {text}")
            raise ReadingStoreError(f"InfluxDB query failed: HTTP {response.status}: {text}")
        try:
            chunks = [json.loads(line) for line in response.data.splitlines() if line.strip()]
        except ValueError as exc:
            raise ReadingStoreError("InfluxDB query answer is not JSON") from exc
        results: list[list[dict[str, Any]]] = [[] for _ in statements]
        for body in chunks:
            if "error" in body:
                raise ReadingStoreError(f"InfluxDB query failed: {body['error']}")
            self._collect(body, results)
        return results

    @staticmethod
    def _collect(body: dict[str, Any], results: list[list[dict[str, Any]]]) -> None:
        """Add one chunk's rows to `results`, per statement (a series may go on in the next chunk)."""
        for result in body.get("results", []):
            index = int(result.get("statement_id", 0))
            if "error" in result:
                message = str(result["error"])
                if message.startswith("database not found"):
                    raise ReadingStoreUnavailable(f"InfluxDB query failed: {message}")
                raise ReadingStoreError(f"InfluxDB query failed: {message}")
            for series in result.get("series", []):
                columns = series["columns"]
                tags = series.get("tags")  # GROUP BY a tag: each row gets the series' tag values
                if tags:
                    results[index].extend(
                        {**tags, **dict(zip(columns, values, strict=True))} for values in series["values"]
                    )
                else:
                    results[index].extend(
                        dict(zip(columns, values, strict=True)) for values in series["values"]
                    )

    def _window_statement(
        self, fields: Iterable[str], kind: ReadingKind, patient_id: str, start: datetime, end: datetime
    ) -> str:
        """Points whose measured_at may lie in [start, end): whole seconds, exact filter later."""
        low = _second_floor_ns(start)
        high = _second_floor_ns(end) + NS_PER_S
        columns = ", ".join(_ident(f) for f in fields)
        return (
            f"SELECT {columns} FROM {_ident(kind.value)} WHERE {_patient_clause(patient_id)} "  # noqa: S608 - quoted idents/literals
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
            ("measured_at_us", "reading_id", _JSON_FIELD), ReadingKind(kind), patient_id, start, end
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
            (page,) = self._query([f"{base}{bounds} ORDER BY time ASC LIMIT {page_points}"])
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
        last = self._query_chunked(
            [
                f"SELECT {_ident('reading_id')} FROM {_ident(k.value)} WHERE {_patient_clause(p)}"  # noqa: S608 - quoted idents/literals
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
                    f"SELECT {_ident('measured_at_us')}, {_ident('reading_id')}, {_ident(_JSON_FIELD)} "  # noqa: S608 - quoted idents/literals
                    f"FROM {_ident(k.value)} WHERE {_patient_clause(p)}{validity} "
                    f"AND time >= {second} AND time < {second + NS_PER_S}"
                )
        best: dict[str, tuple[tuple[int, str], str]] = {}
        for rows in self._query_chunked(statements):
            for row in rows:
                reading = reading_from_json(row[_JSON_FIELD])
                key = (int(row["measured_at_us"]), str(row["reading_id"]))
                patient = reading.patient_id or ""
                if patient not in best or key > best[patient][0]:
                    best[patient] = (key, row[_JSON_FIELD])
        return {patient: reading_from_json(text) for patient, (_, text) in best.items()}

    def _query_chunked(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        results: list[list[dict[str, Any]]] = []
        for i in range(0, len(statements), _STATEMENTS_PER_QUERY):
            results.extend(self._query(statements[i : i + _STATEMENTS_PER_QUERY]))
        return results

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
            self._window_statement(("reading_id", _JSON_FIELD), kind, patient_id, start, end)
            + ' AND "in_averages" = false'
        )
        rows, left_rows = self._query([numbers, left_out])
        whole = {str(row["reading_id"]): row[_JSON_FIELD] for row in left_rows}
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
        low, high = _second_floor_ns(start), _second_floor_ns(end) + NS_PER_S
        patients = list(dict.fromkeys(check_patient_id(p) for p in patient_ids))
        common = ("measured_at_us", "reading_id", "in_averages")
        fields = {
            ReadingKind.BLOOD_PRESSURE: (*common, "systolic_mmhg", "diastolic_mmhg")
            + (("pulse_bpm", IRREGULAR_PULSE_FIELD) if details else ()),
            ReadingKind.GLUCOSE: (*common, *GLUCOSE_FIELDS, CONTINUOUS_FIELD),
        }
        measurements = f"{_ident(ReadingKind.BLOOD_PRESSURE.value)}, {_ident(ReadingKind.GLUCOSE.value)}"
        statements: list[str] = []
        groups = [
            patients[i : i + HISTORY_PATIENTS_PER_STATEMENT]
            for i in range(0, len(patients), HISTORY_PATIENTS_PER_STATEMENT)
        ]
        for group in groups:
            who = " OR ".join(_patient_clause(p) for p in group)
            window = f"WHERE ({who}) AND time >= {low} AND time < {high}"
            for kind, names in fields.items():
                selected = ", ".join(_ident(f) for f in names)
                statement = f"SELECT {selected} FROM {_ident(kind.value)} {window} GROUP BY "  # noqa: S608 - quoted idents/literals
                statements.append(statement + '"patient_id"')
            if details:
                statements.append(
                    f"SELECT {_ident('reading_id')}, {_ident(_JSON_FIELD)} FROM {measurements} "  # noqa: S608 - quoted idents/literals
                    f'{window} AND "in_averages" = false'
                )
        per_group = 3 if details else 2
        answers = self._query_chunked(statements)
        chosen: dict[str, dict[str, tuple[ReadingKind, dict[str, Any]]]] = {p: {} for p in patients}
        whole: dict[str, str] = {}
        for g in range(len(groups)):
            bp_rows, glucose_rows, *left = answers[per_group * g : per_group * (g + 1)]
            for kind, rows in ((ReadingKind.BLOOD_PRESSURE, bp_rows), (ReadingKind.GLUCOSE, glucose_rows)):
                for row in rows:
                    if low_us <= int(row["measured_at_us"]) < high_us:
                        chosen[str(row["patient_id"])][str(row["reading_id"])] = (kind, row)
            for row in left[0] if left else ():
                whole[str(row["reading_id"])] = row[_JSON_FIELD]
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
        (rows,) = self._query(
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

    # -- setting up ------------------------------------------------------------------------------

    def ensure_database(self, retention: timedelta | None) -> str:
        """InfluxDB 1.x (1.8 with its own databases): create the database if missing, and make the
        configured retention policy keep points `retention` long (None: for ever), as the database's
        default. InfluxDB then drops whole shards once they are past it. Idempotent: run at every
        start, so the setting is the one source of the duration. Returns the duration set."""
        duration = _influx_duration(retention)
        database, policy = _ident(self.config.database), _ident(self.config.retention_policy or "autogen")
        self._query([f"CREATE DATABASE {database}"])
        (rows,) = self._query([f"SHOW RETENTION POLICIES ON {database}"])
        if any(row.get("name") == (self.config.retention_policy or "autogen") for row in rows):
            statement = f"ALTER RETENTION POLICY {policy} ON {database} DURATION {duration} DEFAULT"
        else:
            statement = (
                f"CREATE RETENTION POLICY {policy} ON {database} DURATION {duration} REPLICATION 1 DEFAULT"
            )
        self._query([statement])
        logger.info(
            "InfluxDB database and retention policy ready",
            extra={
                "database": self.config.database,
                "rp": self.config.retention_policy,
                "duration": duration,
            },
        )
        return duration

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        self._http.clear()


class _Transient(ReadingStoreUnavailable):
    """A failure worth retrying: connection refused/reset, timeout, HTTP 5xx or 429."""


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _unique_readings(rows: Iterable[Mapping[str, Any]]) -> list[AnyReading]:
    by_id: dict[str, AnyReading] = {}
    for row in rows:
        reading = reading_from_json(row[_JSON_FIELD])
        by_id.setdefault(reading.reading_id, reading)
    return sorted(by_id.values(), key=sort_key)


def _body(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or exc.reason)[:500]


def _influx_duration(retention: timedelta | None) -> str:
    """An InfluxQL duration literal of whole hours (INF: for ever)."""
    if retention is None:
        return "INF"
    hours = math.ceil(retention.total_seconds() / 3600)
    if hours < 1:
        raise ValueError("an InfluxDB retention policy lasts at least an hour")
    return f"{hours}h"


def ensure_bucket(
    url: str, token: str, org: str, bucket: str, retention: timedelta | None, *, timeout_s: float = 10.0
) -> bool:
    """InfluxDB 2.x: create `bucket` if missing, with points expiring after `retention` (None: never),
    or set that expiry on the existing bucket. Returns True if it created the bucket."""
    from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

    rules = []
    if retention is not None:
        seconds = int(retention.total_seconds())
        rules.append(BucketRetentionRules(type="expire", every_seconds=seconds))  # type: ignore[no-untyped-call]
    with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as client:
        try:
            api = client.buckets_api()
            found = api.find_bucket_by_name(bucket)
            if found is None:
                api.create_bucket(bucket_name=bucket, retention_rules=rules, org=org)
                created = True
            else:
                found.retention_rules = rules
                api.update_bucket(found)
                created = False
        except ApiException as exc:
            raise ReadingStoreUnavailable(f"bucket set-up failed: HTTP {exc.status}: {_body(exc)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReadingStoreUnavailable(f"bucket set-up failed: {type(exc).__name__}: {exc}") from exc
    logger.info("InfluxDB bucket ready", extra={"bucket": bucket, "new_bucket": created})
    return created


def ensure_dbrp_mapping(
    url: str,
    token: str,
    org: str,
    bucket: str,
    database: str,
    retention_policy: str = "autogen",
    *,
    timeout_s: float = 10.0,
) -> bool:
    """On InfluxDB 2.x, map `database/retention_policy` to `bucket` so InfluxQL `/query` reaches it.

    "Because InfluxQL uses the 1.x data model, a bucket must be mapped to a database and retention
    policy (DBRP) before it can be queried using InfluxQL" (reliability.md §3). Returns True if it
    created the mapping, False if one existed. Not needed on 1.8 (databases are native) or 3.x.
    """
    from influxdb_client.domain.dbrp_create import DBRPCreate
    from influxdb_client.service.dbr_ps_service import DBRPsService

    with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as client:
        try:
            found = client.buckets_api().find_bucket_by_name(bucket)
            if found is None:
                raise ReadingStoreError(f"bucket {bucket!r} does not exist")
            service = DBRPsService(client.api_client)  # type: ignore[no-untyped-call]
            existing = service.get_dbr_ps(  # type: ignore[no-untyped-call]
                org=org, bucket_id=found.id, db=database, rp=retention_policy
            )
            if existing.content:
                return False
            service.post_dbrp(  # type: ignore[no-untyped-call]
                DBRPCreate(  # type: ignore[no-untyped-call]
                    org=org,
                    bucket_id=found.id,
                    database=database,
                    retention_policy=retention_policy,
                    default=True,
                )
            )
        except ApiException as exc:
            raise ReadingStoreUnavailable(f"DBRP mapping failed: HTTP {exc.status}: {_body(exc)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReadingStoreUnavailable(f"DBRP mapping failed: {type(exc).__name__}: {exc}") from exc
    logger.info(
        "created DBRP mapping", extra={"bucket": bucket, "database": database, "rp": retention_policy}
    )
    return True
