"""Fixtures for the reading store tests: a fresh store per test, over SQLite and a real influxd."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.readings import ReadingStore, SqliteReadingStore
from testbed.influxdb import InfluxServer, influxd_available

_INFLUXD_MISSING = "influxd missing: install the Debian package influxdb (testbed/influxdb.py)"
_database_numbers = itertools.count(1)

STORE_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("influxdb", id="influxdb", marks=pytest.mark.influxdb),
]


@pytest.fixture(scope="session")
def influxdb_server() -> Iterator[InfluxServer]:
    """One private influxd (1.6, Debian) behind the /api/v2/write shim, for the whole session."""
    if not influxd_available():
        pytest.skip(_INFLUXD_MISSING)
    with InfluxServer() as server:
        yield server


@pytest.fixture
def influxdb_database(influxdb_server: InfluxServer) -> Iterator[str]:
    """A fresh, empty database on the session's influxd; dropped afterwards."""
    if not influxdb_server.running:  # a test that stopped it failed before restarting it
        influxdb_server.start()
    name = f"vitalgate_test_{next(_database_numbers)}"
    influxdb_server.create_database(name)
    yield name
    if not influxdb_server.running:
        influxdb_server.start()
    influxdb_server.drop_database(name)


def make_influx_store(server: InfluxServer, database: str, **overrides: object) -> ReadingStore:
    from storage.readings.influxdb.connection import InfluxConfig
    from storage.readings.influxdb.store import InfluxReadingStore

    options: dict[str, object] = {"timeout_s": 5.0, "retry_backoff_s": 0.05, **overrides}
    return InfluxReadingStore(InfluxConfig(url=server.url, database=database, **options))  # type: ignore[arg-type]


@pytest.fixture(params=STORE_KINDS)
def reading_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadingStore]:
    """A fresh, empty reading store of each kind."""
    store: ReadingStore
    if request.param == "sqlite":
        store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    else:
        server = request.getfixturevalue("influxdb_server")
        store = make_influx_store(server, request.getfixturevalue("influxdb_database"))
    try:
        yield store
    finally:
        store.close()
