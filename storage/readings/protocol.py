"""The reading store protocol: what ingest, alerts and the API need from wherever readings live.

Sync on purpose. Ingest calls the store from paho's network thread, which is not an event loop; the
FastAPI side and the alert engine call it through `asyncio.to_thread(store.method, ...)`, so the event
loop never blocks on disk or network I/O (DESIGN.md, Conventions: "nothing blocks the event loop").
One blocking implementation per backend, safe to call from several threads at once, is simpler to
get right than a sync and an async twin. Every implementation bounds its own waits (SQLite busy
timeout, HTTP timeouts), so a caller in a worker thread never hangs forever.

Idempotency is on `reading_id` (DESIGN.md, Delivery): writing a reading that is already stored
changes nothing and reports it as a duplicate, so a retransmission anywhere is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Protocol, runtime_checkable

from vitals.readings import BloodPressureReading, GlucoseReading, ReadingKind

AnyReading = BloodPressureReading | GlucoseReading


class ReadingStoreError(Exception):
    """Base of every error a reading store raises. Messages carry ids, never personal data."""


class ReadingStoreUnavailable(ReadingStoreError):
    """The store could not be reached or did not confirm the write in time: retry later.

    Raised after the store's own retries are spent. Nothing in the failed call is reported stored;
    some readings may nonetheless have reached the store, which is harmless because a retry of the
    same batch is idempotent. Ingest must not ack the MQTT message and must retry.
    """


class ReadingStoreRejected(ReadingStoreError):
    """The store refused the data itself (e.g. InfluxDB HTTP 400: a field type conflict).

    Retrying the same batch cannot succeed; ingest dead-letters it with this reason.
    """


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one batch write, in the batch's order.

    `stored`: reading ids newly stored by this call. `duplicates`: ids that were already present (or
    occurred earlier in the same batch). Every id of the batch is in exactly one of them, so both
    together are what ingest acks as durably stored.
    """

    stored: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()

    @property
    def all_ids(self) -> tuple[str, ...]:
        return self.stored + self.duplicates


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """Count, mean, minimum and maximum of one canonical quantity over one day."""

    count: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class DailyAggregate:
    """One patient's readings of one kind on one calendar day (UTC or the tz asked for).

    `count` is the number of readings that went into the averages; `excluded_count` the readings of
    that day left out: invalid ones and, for blood pressure, those the cuff flagged for body movement,
    a loose cuff or improper position (clinical-rules.md §7, DQ-02; see
    `BloodPressureReading.excluded_from_averages`). Metric summaries are None when no included
    reading carried that quantity (e.g. a cuff that sends no pulse).
    """

    patient_id: str
    kind: ReadingKind
    day: date
    count: int
    excluded_count: int = 0
    systolic_mmhg: MetricSummary | None = None
    diastolic_mmhg: MetricSummary | None = None
    pulse_bpm: MetricSummary | None = None
    glucose_mg_dl: MetricSummary | None = None


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """A patient's readings of one kind as columns, for summaries (alerts.summaries): what a summary
    needs of every reading without building a model per reading.

    Lists are aligned, one entry per reading, ordered by `measured_at` then `reading_id`. The values
    of the other kind's quantities are empty lists (a blood-pressure result has no glucose). Every
    reading that must stay out of averages (`in_averages` False: invalid, or a blood pressure the cuff
    flagged for body movement, a loose cuff or improper position) is also given whole in `left_out`,
    so its reasons can be read; `left_out` holds None for the others.
    """

    kind: ReadingKind
    measured_at_us: list[int] = field(default_factory=list)
    in_averages: list[bool] = field(default_factory=list)
    systolic_mmhg: list[float | None] = field(default_factory=list)
    diastolic_mmhg: list[float | None] = field(default_factory=list)
    pulse_bpm: list[float | None] = field(default_factory=list)
    glucose_mg_dl: list[float | None] = field(default_factory=list)
    meal: list[str | None] = field(default_factory=list)
    left_out: list[AnyReading | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.measured_at_us)


@dataclass(slots=True)
class HistoryColumns:
    """Several patients' readings of both kinds as columns: what the alert rules judge of each
    reading, without building a model per reading (alerts.history turns them into the rules' input).

    Lists are aligned, one entry per reading, grouped by patient in the order the patients were asked
    for, each patient's readings ordered by `measured_at` then `reading_id`. A value a reading does not
    carry is None (a glucose has no systolic). `continuous`: a glucose measured in interstitial fluid
    or subcutaneous tissue, i.e. by a continuous monitor. Every reading out of averages (`in_averages`
    False) is also given whole in `left_out`, so its reasons can be read; None for the others.
    """

    patient_id: list[str] = field(default_factory=list)
    reading_id: list[str] = field(default_factory=list)
    kind: list[ReadingKind] = field(default_factory=list)
    measured_at_us: list[int] = field(default_factory=list)
    in_averages: list[bool] = field(default_factory=list)
    systolic_mmhg: list[float | None] = field(default_factory=list)
    diastolic_mmhg: list[float | None] = field(default_factory=list)
    pulse_bpm: list[float | None] = field(default_factory=list)
    glucose_mg_dl: list[float | None] = field(default_factory=list)
    meal: list[str | None] = field(default_factory=list)
    continuous: list[bool] = field(default_factory=list)
    irregular_pulse: list[bool] = field(default_factory=list)
    left_out: list[AnyReading | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.measured_at_us)


@runtime_checkable
class ReadingStore(Protocol):
    """Where readings live. Implementations: `SqliteReadingStore`, `InfluxReadingStore`.

    Time arguments are timezone-aware datetimes; ranges are half-open `[start, end)` on the
    corrected measurement time `measured_at`. Results come back as the reading models they were
    written as, with every field (native value and unit, canonical values, device time, validity and
    reasons, raw bytes), ordered by `measured_at` then `reading_id`.
    """

    def write_batch(self, readings: Sequence[AnyReading]) -> WriteResult:
        """Store a batch durably, idempotent on reading_id.

        Returns only after the store has confirmed the write (SQLite commit; InfluxDB HTTP 204).
        Raises `ReadingStoreUnavailable` (retry) or `ReadingStoreRejected` (never succeeds).
        """
        ...

    def query_range(
        self,
        patient_id: str,
        kind: ReadingKind,
        start: datetime,
        end: datetime,
        *,
        limit: int | None = None,
    ) -> list[AnyReading]:
        """A patient's readings of one kind with start <= measured_at < end, valid or not."""
        ...

    def latest(
        self, patient_id: str, kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> AnyReading | None:
        """The patient's reading with the greatest measured_at (of `kind`, if given)."""
        ...

    def latest_by_patient(
        self, patient_ids: Sequence[str], kind: ReadingKind | None = None, *, valid_only: bool = False
    ) -> dict[str, AnyReading]:
        """`latest` for many patients at once (a doctor's panel): patient_id -> reading, patients
        without readings left out. InfluxDB answers it in two requests instead of two per patient."""
        ...

    def reading_columns(
        self, patient_id: str, kind: ReadingKind, start: datetime, end: datetime
    ) -> ReadingColumns:
        """`query_range` as columns (`ReadingColumns`): the same readings, in the same order."""
        ...

    def history_columns(
        self, patient_ids: Sequence[str], start: datetime, end: datetime, *, details: bool = True
    ) -> HistoryColumns:
        """Both kinds of readings of `patient_ids` with start <= measured_at < end, valid or not, as
        columns (`HistoryColumns`): one range query per patient, or fewer. Without `details`, the
        reading ids, pulses, irregular-pulse flags and left-out readings stay empty (the sweep's
        window rules need only the rest)."""
        ...

    def daily_aggregates(
        self,
        patient_id: str,
        kind: ReadingKind,
        first_day: date,
        last_day: date,
        *,
        tz: tzinfo = UTC,
    ) -> list[DailyAggregate]:
        """Per-day summaries for first_day..last_day inclusive, days in `tz`; days without readings
        are left out. Invalid and flagged readings are excluded (counted in `excluded_count`)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
