"""Fixtures for the reading store tests: a fresh store per test, over SQLite and a real influxd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.readings import ReadingStore, SqliteReadingStore

STORE_KINDS = [
    pytest.param("sqlite", id="sqlite"),
]


@pytest.fixture(params=STORE_KINDS)
def reading_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadingStore]:
    """A fresh, empty reading store of each kind."""
    store: ReadingStore
    if request.param == "sqlite":
        store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    else:
        raise AssertionError(request.param)
    try:
        yield store
    finally:
        store.close()
