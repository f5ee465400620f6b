"""InfluxDB-only behaviour against a real influxd: outages, retries, overwrite semantics, rejects."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from storage.readings import ReadingStore, ReadingStoreRejected, ReadingStoreUnavailable
from storage.readings.influxdb.points import (
    BLOOD_PRESSURE_FIELDS,
    COMMON_FIELDS,
    GLUCOSE_FIELDS,
    IRREGULAR_PULSE_FIELD,
    line_protocol,
    point_time_ns,
)
from storage.readings.records import in_averages
from testbed.influxdb import InfluxServer, map_v2_write
from tests.storage.conftest import make_influx_store
from tests.storage.readings_data import T0, bp, every_field_readings, glucose
from vitals.readings import BloodPressureReading, ReadingKind

pytestmark = pytest.mark.influxdb

WINDOW = (T0 - timedelta(days=1), T0 + timedelta(days=1))


@pytest.fixture
def store(influxdb_server: InfluxServer, influxdb_database: str) -> Iterator[ReadingStore]:
    s = make_influx_store(influxdb_server, influxdb_database, write_attempts=2)
    yield s
    s.close()


def _count_points(server: InfluxServer, database: str, measurement: str) -> int:
    body = server.query(f'SELECT count("reading_id") FROM "{measurement}"', database)
    series = body["results"][0].get("series", [])  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def test_outage_raises_typed_error_and_recovery_completes_the_data(
    influxdb_server: InfluxServer, influxdb_database: str, store: ReadingStore
) -> None:
    before = [bp("p-1", T0 - timedelta(hours=1), 120.0, 80.0)]
    during = every_field_readings("p-1")
    assert store.write_batch(before).stored == (before[0].reading_id,)

    influxdb_server.stop()
    try:
        with pytest.raises(ReadingStoreUnavailable, match="after 2 attempt"):
            store.write_batch(during)
        with pytest.raises(ReadingStoreUnavailable):
            store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, *WINDOW)
    finally:
        influxdb_server.start()

    # Nothing of the failed batch was reported stored (the call raised); ingest retries it whole.
    retry = store.write_batch(during)
    assert set(retry.all_ids) == {r.reading_id for r in during}
    assert retry.stored == tuple(r.reading_id for r in during)  # influxd was down: none got in
    got = [
        *store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, *WINDOW),
        *store.query_range("p-1", ReadingKind.GLUCOSE, *WINDOW),
    ]
    expected = [*before, *during]
    assert len(got) == len(expected)
    assert {r.reading_id: r for r in got} == {r.reading_id: r for r in expected}


def test_write_retries_until_influxd_comes_back(
    influxdb_server: InfluxServer, influxdb_database: str
) -> None:
    patient_store = make_influx_store(
        influxdb_server, influxdb_database, write_attempts=100, retry_backoff_s=0.05
    )
    first_retry = threading.Event()

    class _OnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().endswith("failed, retrying"):
                first_retry.set()

    handler = _OnRetry(level=logging.WARNING)
    store_logger = logging.getLogger("storage.readings.influxdb")
    store_logger.addHandler(handler)
    previous_level = store_logger.level
    store_logger.setLevel(logging.WARNING)
    readings = [glucose("p-9", T0 + timedelta(minutes=i), 100.0 + i, sequence_number=i) for i in range(20)]

    def restart_after_first_retry() -> None:
        if first_retry.wait(timeout=30):
            influxdb_server.start()

    restarter = threading.Thread(target=restart_after_first_retry)
    try:
        influxdb_server.stop()
        restarter.start()
        result = patient_store.write_batch(readings)  # blocks through the outage, then succeeds
        restarter.join(timeout=30)
        assert first_retry.is_set()
        assert result.stored == tuple(r.reading_id for r in readings)
        assert patient_store.query_range("p-9", ReadingKind.GLUCOSE, *WINDOW) == readings
    finally:
        first_retry.set()
        restarter.join(timeout=30)
        store_logger.removeHandler(handler)
        store_logger.setLevel(previous_level)
        patient_store.close()
        if not influxdb_server.running:
            influxdb_server.start()


def test_rewrite_without_duplicate_check_overwrites_the_same_points(
    influxdb_server: InfluxServer, influxdb_database: str
) -> None:
    blind = make_influx_store(influxdb_server, influxdb_database, check_duplicates=False)
    try:
        readings = every_field_readings("p-1")
        blind.write_batch(readings)
        again = blind.write_batch(readings)
        assert len(again.stored) == len(readings)  # the documented approximation: no check, all "new"
        # ...but InfluxDB replaced identical points: the same measurement, tag set and timestamp.
        assert _count_points(influxdb_server, influxdb_database, "blood_pressure") == 5
        assert _count_points(influxdb_server, influxdb_database, "glucose") == 4
    finally:
        blind.close()


def test_field_type_conflict_is_rejected_not_retried(
    influxdb_server: InfluxServer, influxdb_database: str, store: ReadingStore
) -> None:
    reading = bp("p-1", T0, 120.0, 80.0)
    # Someone wrote systolic_mmhg as a string into the same shard: every later float write conflicts.
    bad = f'blood_pressure,patient_id=p-0 systolic_mmhg="oops" {point_time_ns(reading)}'
    conn = http.client.HTTPConnection("127.0.0.1", influxdb_server.http_port, timeout=10)
    conn.request("POST", f"/write?db={influxdb_database}&precision=ns", body=bad)
    assert conn.getresponse().status == 204
    conn.close()
    with pytest.raises(ReadingStoreRejected, match="HTTP 400"):
        store.write_batch([reading])


def test_line_protocol_types_and_escapes() -> None:
    reading = bp("p-1", T0 + timedelta(microseconds=250), 120.0, 80.0, pulse_bpm=None)
    line = line_protocol(reading)
    head, fields, timestamp = (
        line.split(" ", 1)[0],
        line.split(" ", 1)[1].rsplit(" ", 1)[0],
        line.rsplit(" ", 1)[1],
    )
    assert head == "blood_pressure,patient_id=p-1"
    assert int(timestamp) // 1_000_000_000 == int(T0.timestamp())  # whole second + per-id offset
    assert "systolic_mmhg=120.0," in fields and "valid=true" in fields
    assert ",pulse_bpm=" not in fields  # absent, not null (it is only inside reading_json)
    assert f"measured_at_us={int(T0.timestamp()) * 1_000_000 + 250}i" in fields
    assert '\\"reading_id\\":' in fields  # JSON quotes escaped inside the string field


def _field_keys(server: InfluxServer, database: str, measurement: str) -> dict[str, str]:
    body = server.query(f'SHOW FIELD KEYS FROM "{measurement}"', database)
    (series,) = body["results"][0]["series"]  # type: ignore[index]
    return {name: kind for name, kind in series["values"]}


def test_points_hold_the_documented_fields_and_influxql_can_average_them(
    influxdb_server: InfluxServer, influxdb_database: str, store: ReadingStore
) -> None:
    readings = every_field_readings("p-1")
    store.write_batch(readings)
    # docs/storage-schema.md, "Fields": the whole reading is reading_json; beside it only what
    # InfluxQL needs, each always with the same type.
    documented = {
        "reading_id": "string",
        "measured_at_us": "integer",
        "valid": "boolean",
        "in_averages": "boolean",
        "systolic_mmhg": "float",
        "diastolic_mmhg": "float",
        "mean_arterial_mmhg": "float",
        "pulse_bpm": "float",
        "irregular_pulse": "boolean",  # written only when true (the alert rules' flag)
        "reading_json": "string",
    }
    assert set(documented) == {*COMMON_FIELDS, *BLOOD_PRESSURE_FIELDS, IRREGULAR_PULSE_FIELD, "reading_json"}
    stored = _field_keys(influxdb_server, influxdb_database, "blood_pressure")
    assert stored.items() <= documented.items()
    assert set(documented) - set(stored) == {"mean_arterial_mmhg"}  # none of these cuffs sends one
    assert set(_field_keys(influxdb_server, influxdb_database, "glucose")) == {
        *COMMON_FIELDS,
        *GLUCOSE_FIELDS,
        "reading_json",
    }  # no continuous monitor among them: no `continuous` field
    # An operator's Grafana query over the canonical-unit fields (a kPa cuff included, converted)
    # gives what the readings say.
    body = influxdb_server.query(
        'SELECT mean("systolic_mmhg") FROM "blood_pressure" '
        'WHERE "patient_id" = \'p-1\' AND "in_averages" = true',
        influxdb_database,
    )
    (series,) = body["results"][0]["series"]  # type: ignore[index]
    averaged = [r.systolic_mmhg for r in readings if isinstance(r, BloodPressureReading) and in_averages(r)]
    assert len(averaged) >= 3
    assert series["values"][0][1] == pytest.approx(sum(averaged) / len(averaged))


def test_a_point_written_with_the_earlier_field_set_reads_back_and_is_a_duplicate(
    influxdb_server: InfluxServer, influxdb_database: str, store: ReadingStore
) -> None:
    """A store written before the field set was trimmed (19-20 fields a point) still reads, and a
    resent reading is recognised as stored."""
    reading = bp("p-1", T0, 131.0, 84.0)
    head, rest = line_protocol(reading).split(" ", 1)
    earlier_only = 'unit="mmHg",systolic=131.0,diastolic=84.0,user_id=1i,raw_hex="1e7800500000",meter_key="m"'
    conn = http.client.HTTPConnection("127.0.0.1", influxdb_server.http_port, timeout=10)
    conn.request("POST", f"/write?db={influxdb_database}&precision=ns", body=f"{head} {earlier_only},{rest}")
    assert conn.getresponse().status == 204
    conn.close()
    assert store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, *WINDOW) == [reading]
    assert store.write_batch([reading]).duplicates == (reading.reading_id,)
    (day,) = store.daily_aggregates("p-1", ReadingKind.BLOOD_PRESSURE, T0.date(), T0.date())
    assert day.count == 1


def test_shim_maps_v2_write_to_v1() -> None:
    assert map_v2_write("/api/v2/write?org=-&bucket=vg%2Fautogen&precision=us") == (
        "/write?db=vg&rp=autogen&precision=u"
    )
    assert map_v2_write("/api/v2/write?bucket=vg/&precision=ns") == "/write?db=vg&precision=ns"
    with pytest.raises(ValueError, match="missing a slash"):
        map_v2_write("/api/v2/write?bucket=vg")


def test_a_transient_server_error_is_retried_inside_the_call(
    influxdb_server: InfluxServer, influxdb_database: str, store: ReadingStore
) -> None:
    readings = every_field_readings("p-1")
    influxdb_server.write_faults.arm(fail=1, status=503)
    result = store.write_batch(readings)  # write_attempts=2: the second attempt goes through
    assert influxdb_server.write_faults.failed == 1
    assert result.stored == tuple(r.reading_id for r in readings)
    assert _count_points(influxdb_server, influxdb_database, "glucose") == 4


def test_a_transient_error_on_a_read_is_retried_and_a_lasting_one_reported_as_unavailable(
    influxdb_server: InfluxServer, store: ReadingStore
) -> None:
    readings = every_field_readings("p-1")
    store.write_batch(readings)
    expected = sorted(r.reading_id for r in readings if r.kind is ReadingKind.GLUCOSE)

    influxdb_server.query_faults.arm(fail=1, status=503)  # a proxy's or server's blip: one 503
    rows = store.query_range("p-1", ReadingKind.GLUCOSE, *WINDOW)
    assert influxdb_server.query_faults.failed == 1
    assert sorted(r.reading_id for r in rows) == expected

    influxdb_server.query_faults.arm(fail=10, status=503)
    with pytest.raises(ReadingStoreUnavailable, match="query failed after 2 attempt"):
        store.latest("p-1", ReadingKind.GLUCOSE)
    assert influxdb_server.query_faults.failed == 2  # read_attempts=2, then the caller is told
    influxdb_server.query_faults.arm(fail=0)
    latest = store.latest("p-1", ReadingKind.GLUCOSE)
    assert latest is not None and latest.reading_id in expected


def test_failure_mid_batch_reports_nothing_and_the_retry_completes_it(
    influxdb_server: InfluxServer, influxdb_database: str
) -> None:
    store = make_influx_store(influxdb_server, influxdb_database, write_attempts=2, max_points_per_request=3)
    try:
        readings = [bp("p-1", T0 + timedelta(minutes=i), 120.0 + i, 80.0) for i in range(9)]
        influxdb_server.write_faults.arm(allow=1, fail=2)  # chunk 1 lands, chunk 2 fails twice
        with pytest.raises(ReadingStoreUnavailable, match="after 2 attempt"):
            store.write_batch(readings)
        assert _count_points(influxdb_server, influxdb_database, "blood_pressure") == 3  # partly in

        retry = store.write_batch(readings)
        # The documented approximation: points of the failed call that did land count as duplicates.
        assert retry.duplicates == tuple(r.reading_id for r in readings[:3])
        assert retry.stored == tuple(r.reading_id for r in readings[3:])
        assert store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, *WINDOW) == readings
    finally:
        store.close()


def test_dbrp_helper_reports_a_server_without_the_v2_api_as_unavailable(
    influxdb_server: InfluxServer,
) -> None:
    # 1.x has no /api/v2/buckets (it needs no DBRP mapping): the helper must fail typed, not crash.
    from storage.readings.influxdb.provisioning import ensure_dbrp_mapping

    with pytest.raises(ReadingStoreUnavailable, match="DBRP mapping failed"):
        ensure_dbrp_mapping(influxdb_server.url, "token", "org", "bucket", "vitalgate", timeout_s=5)
