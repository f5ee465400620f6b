"""InfluxDB range reads in pages against a real influxd: `limit` is honoured in the query (little is
read for a small limit), and a window of more than 10,000 points is answered whole, not refused."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from storage.readings.influxdb.store import InfluxReadingStore
from testbed.influxdb import InfluxServer
from tests.storage.conftest import make_influx_store
from tests.storage.readings_data import T0, bp
from vitals.readings import ReadingKind

pytestmark = pytest.mark.influxdb

READINGS = 12_000  # past the 10,000 points at which influxd splits an answer


@pytest.fixture
def filled(influxdb_server: InfluxServer, influxdb_database: str) -> Iterator[InfluxReadingStore]:
    store = make_influx_store(influxdb_server, influxdb_database)
    assert isinstance(store, InfluxReadingStore)
    store.write_batch([bp("p1", T0 + timedelta(minutes=i), 120 + i % 40, 80) for i in range(READINGS)])
    yield store
    store.close()


def _count_rows(store: InfluxReadingStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows each InfluxDB answer carried, recorded as the store reads."""
    answered: list[int] = []
    query_once = store._connection._query_once

    def counting(statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        result = query_once(statements)
        answered.append(sum(len(rows) for rows in result))
        return result

    monkeypatch.setattr(store._connection, "_query_once", counting)
    return answered


WINDOW = (T0 - timedelta(hours=1), T0 + timedelta(days=30))


def test_limit_one_over_many_readings_returns_one_and_reads_little(
    filled: InfluxReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest-first panel and the API's `limit` ask InfluxDB for what they need, not the window."""
    answered = _count_rows(filled, monkeypatch)
    [first] = filled.query_range("p1", ReadingKind.BLOOD_PRESSURE, *WINDOW, limit=1)
    assert first.measured_at == T0
    assert sum(answered) <= 2  # the reading, and the check that its second holds no other


def test_a_limit_returns_the_first_readings_in_time_order(filled: InfluxReadingStore) -> None:
    """Paging keeps the order and the count whatever the page boundaries."""
    got = filled.query_range("p1", ReadingKind.BLOOD_PRESSURE, *WINDOW, limit=7_321)
    assert [r.measured_at for r in got] == [T0 + timedelta(minutes=i) for i in range(7_321)]


def test_a_window_past_ten_thousand_points_is_answered_whole(
    filled: InfluxReadingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than 10,000 readings in one window: every one, in order, in pages under the row limit."""
    answered = _count_rows(filled, monkeypatch)
    got = filled.query_range("p1", ReadingKind.BLOOD_PRESSURE, *WINDOW)
    assert len(got) == READINGS and len({r.reading_id for r in got}) == READINGS
    assert got == sorted(got, key=lambda r: (r.measured_at, r.reading_id))
    assert max(answered) <= 5_000


def test_the_alert_look_back_of_a_patient_past_ten_thousand_points_is_read_whole(
    filled: InfluxReadingStore,
) -> None:
    """A patient measuring often (a CGM user: 12,960 points in 45 days) is evaluated on every reading."""
    columns = filled.history_columns(["p1"], *WINDOW)
    assert len(columns.reading_id) == READINGS and len(set(columns.reading_id)) == READINGS
    assert columns.measured_at_us == sorted(columns.measured_at_us)
    first = T0 - timedelta(days=1)
    days = filled.daily_aggregates(
        "p1", ReadingKind.BLOOD_PRESSURE, first.date(), (T0 + timedelta(days=9)).date()
    )
    assert sum(d.count for d in days) == READINGS
