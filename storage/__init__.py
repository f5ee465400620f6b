"""vitalgate: storage.

Reading stores live in `storage.readings` (SQLite default, InfluxDB in `storage.readings.influxdb`,
imported only where used so that SQLite-only installs need no influxdb-client).
"""

from storage.readings import ReadingStore, ReadingStoreError, ReadingStoreUnavailable, SqliteReadingStore

__all__ = ["ReadingStore", "ReadingStoreError", "ReadingStoreUnavailable", "SqliteReadingStore"]
