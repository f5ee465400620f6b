"""Reading stores: SQLite (embedded default) and InfluxDB, behind one protocol (DESIGN.md, Storage)."""

from storage.readings.protocol import (
    AnyReading,
    DailyAggregate,
    MetricSummary,
    ReadingColumns,
    ReadingStore,
    ReadingStoreError,
    ReadingStoreRejected,
    ReadingStoreUnavailable,
    WriteResult,
)
from storage.readings.sqlite import SqliteReadingStore

__all__ = [
    "AnyReading",
    "DailyAggregate",
    "MetricSummary",
    "ReadingColumns",
    "ReadingStore",
    "ReadingStoreError",
    "ReadingStoreRejected",
    "ReadingStoreUnavailable",
    "SqliteReadingStore",
    "WriteResult",
]
