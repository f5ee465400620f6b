"""The HTTP side of the InfluxDB store: where InfluxDB is (`InfluxConfig`), line-protocol writes
through influxdb-client with `SYNCHRONOUS` write options, InfluxQL on the v1-compatible `/query`
endpoint (chunked answers), and explicit, bounded retries of transient failures."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from storage.readings.protocol import (
    ReadingStoreError,
    ReadingStoreRejected,
    ReadingStoreUnavailable,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


# Server guidance: "points in batches of 5,000 to 10,000 for optimal performance" (InfluxDB v1 API
# docs; maintainers: at most 10,000, influxdb#2379; up to 5,000, influxdb#3601; reliability.md §3).
DEFAULT_MAX_POINTS_PER_REQUEST: Final = 5_000
# Statements per request of a chunked query (the duplicate check, latest values, history), so the
# form body stays small.
STATEMENTS_PER_QUERY: Final = 200
# Points per chunk of a chunked query answer (InfluxDB's own default chunk size).
QUERY_CHUNK_POINTS: Final = 10_000
# Connections kept open to InfluxDB for queries: the alert engine's evaluations (alerts.engine,
# EVALUATION_WORKERS and one for an urgent reading), the periodic sweep and API requests read at
# once; with fewer, every read beyond them opens a connection and drops it afterwards.
QUERY_CONNECTIONS: Final = 8
_MAX_RETRY_DELAY_S: Final = 10.0
_HTTP_RETRYABLE_MIN: Final = 500
_HTTP_TOO_MANY_REQUESTS: Final = 429
_HTTP_BAD_REQUEST: Final = 400
_HTTP_OK: Final = 200
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


class InfluxConnection:
    """Writes and InfluxQL queries on one InfluxDB, with bounded retries. Thread-safe."""

    def __init__(self, config: InfluxConfig, whole_point_fields: frozenset[str] = frozenset()) -> None:
        """`whole_point_fields`: fields every point is written with. InfluxDB 1.x applies a write's
        fields one at a time (each field is a series of its own in the cache), so a read racing
        another process's write can see part of a point; a row that lacks one of these fields,
        where the statement selected it, is such a point and is left out until it is whole."""
        self._whole_point_fields = whole_point_fields
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
            timeout=urllib3.Timeout(connect=config.timeout_s, read=config.timeout_s),
            retries=False,
            maxsize=QUERY_CONNECTIONS,
        )
        self._query_url = (config.query_url or config.url).rstrip("/") + "/query"

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def write_lines(self, lines: list[str]) -> None:
        """Write line-protocol points in one request; InfluxDB has them all once this returns."""
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
                        f"InfluxDB refused the batch (HTTP 400): {error_body(exc)}"
                    ) from exc
                if status >= _HTTP_RETRYABLE_MIN or status == _HTTP_TOO_MANY_REQUESTS:
                    raise _Transient(f"HTTP {status}: {error_body(exc)}") from exc
                raise ReadingStoreUnavailable(
                    f"InfluxDB write failed: HTTP {status}: {error_body(exc)}"
                ) from exc
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

    # -- queries --------------------------------------------------------------------------------

    def query(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
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

    def _collect(self, body: dict[str, Any], results: list[list[dict[str, Any]]]) -> None:
        """Add one chunk's rows to `results`, per statement (a series may go on in the next chunk);
        rows of points not yet whole are left out (`whole_point_fields`)."""
        for result in body.get("results", []):
            index = int(result.get("statement_id", 0))
            if "error" in result:
                message = str(result["error"])
                if message.startswith("database not found"):
                    raise ReadingStoreUnavailable(f"InfluxDB query failed: {message}")
                raise ReadingStoreError(f"InfluxDB query failed: {message}")
            for series in result.get("series", []):
                columns = series["columns"]
                tags = series.get("tags") or {}  # GROUP BY a tag: each row gets the series' tag values
                required = [i for i, name in enumerate(columns) if name in self._whole_point_fields]
                results[index].extend(
                    {**tags, **dict(zip(columns, values, strict=True))}
                    for values in series["values"]
                    if all(values[i] is not None for i in required)
                )

    def query_chunked(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """`query`, in requests of at most STATEMENTS_PER_QUERY statements."""
        results: list[list[dict[str, Any]]] = []
        for i in range(0, len(statements), STATEMENTS_PER_QUERY):
            results.extend(self.query(statements[i : i + STATEMENTS_PER_QUERY]))
        return results

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        self._http.clear()


class _Transient(ReadingStoreUnavailable):
    """A failure worth retrying: connection refused/reset, timeout, HTTP 5xx or 429."""


def error_body(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body or exc.reason)[:500]
