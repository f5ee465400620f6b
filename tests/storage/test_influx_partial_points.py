"""A point InfluxDB shows only in part: InfluxDB 1.x applies a write's fields one at a time, so a
read racing another process's write (two ingest replicas evaluating the same patient) can see a
reading with some fields and not others. Such a row is left out until it is whole: the alert
engine's evaluation neither fails on it nor counts an in-range reading as left out of averages
(which raised a false DQ-02 alert)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from storage.readings.influxdb.points import line_protocol, point_time_ns
from storage.readings.influxdb.store import InfluxReadingStore
from testbed.influxdb import InfluxServer
from tests.storage.conftest import make_influx_store
from tests.storage.readings_data import T0, bp
from vitals.readings import ReadingKind

pytestmark = pytest.mark.influxdb

WINDOW = (T0 - timedelta(hours=1), T0 + timedelta(days=1))


@pytest.fixture
def store(influxdb_server: InfluxServer, influxdb_database: str) -> Iterator[InfluxReadingStore]:
    opened = make_influx_store(influxdb_server, influxdb_database)
    assert isinstance(opened, InfluxReadingStore)
    yield opened
    opened.close()


def _write_part_of(store: InfluxReadingStore, line: str, keep: tuple[str, ...]) -> None:
    """Write the point of `line` with only the fields named in `keep`: what a racing read sees."""
    head, stamp = line.split(" ", 1)[0], line.rsplit(" ", 1)[1]
    kept = [re.search(rf'[ ,]({name}=(?:"[^"]*"|[^, ]+))', line) for name in keep]
    store._connection.write_lines([f"{head} {','.join(m.group(1) for m in kept if m)} {stamp}"])


@pytest.mark.parametrize(
    "visible",
    [
        ("reading_id", "systolic_mmhg", "diastolic_mmhg"),  # no measured_at_us yet
        ("reading_id", "measured_at_us", "systolic_mmhg", "diastolic_mmhg"),  # no in_averages yet
    ],
    ids=["without-its-time", "without-in-averages"],
)
def test_a_reading_seen_in_part_is_left_out_of_the_look_back_until_whole(
    store: InfluxReadingStore, visible: tuple[str, ...]
) -> None:
    """An evaluation reading the look-back while a reading is half written sees the readings that are
    whole, and the half-written one only once it is whole, never as left out of averages."""
    whole = bp("p1", T0, 128, 82)
    racing = bp("p1", T0 + timedelta(minutes=5), 131, 84)
    store.write_batch([whole])
    _write_part_of(store, line_protocol(racing), visible)
    assert point_time_ns(racing) != point_time_ns(whole)

    columns = store.history_columns(["p1"], *WINDOW, details=True)
    assert columns.reading_id == [whole.reading_id]
    assert columns.in_averages == [True]
    assert [r.reading_id for r in store.query_range("p1", ReadingKind.BLOOD_PRESSURE, *WINDOW)] == [
        whole.reading_id
    ]

    store._connection.write_lines([line_protocol(racing)])  # the rest of its fields arrive
    columns = store.history_columns(["p1"], *WINDOW, details=True)
    assert columns.reading_id == [whole.reading_id, racing.reading_id]
    assert columns.in_averages == [True, True]
