"""The rules see the same readings whether the engine builds them from the store's columns (one read
per patient) or from whole reading models: on SQLite and on a real influxd."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from alerts.daily_matrix import columns_from_observations
from alerts.history import observations, sweep_columns, utc_offsets_s
from alerts.model import observation_from_reading
from storage.readings import AnyReading, ReadingStore
from tests.storage.conftest import influxdb_database, influxdb_server, reading_store
from tests.storage.readings_data import T0, bp, every_field_readings, glucose
from vitals.readings import BloodPressureStatus, GlucoseContext, Meal, ReadingKind, SampleType

__all__ = ["influxdb_database", "influxdb_server", "reading_store"]  # fixtures used here

# Europe/Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29.
DST_CHANGE = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def _readings(patient_id: str) -> list[AnyReading]:
    return [
        *every_field_readings(patient_id),
        bp(
            patient_id,
            T0 + timedelta(hours=5),
            132.0,
            84.0,
            status=frozenset({BloodPressureStatus.IRREGULAR_PULSE}),
        ),
        glucose(
            patient_id,
            T0 + timedelta(hours=6),
            61.0,
            sequence_number=7,
            sample_type=SampleType.INTERSTITIAL_FLUID,
            context=GlucoseContext(meal=Meal.FASTING),
        ),
        bp(patient_id, DST_CHANGE - timedelta(minutes=10), 141.0, 91.0),
        bp(patient_id, DST_CHANGE + timedelta(minutes=10), 143.0, 92.0),
    ]


def _others(patient_id: str) -> list[AnyReading]:
    """Another patient's readings (reading ids carry the meter and time, not the patient)."""
    later = T0 + timedelta(days=2)
    return [
        bp(patient_id, later, 150.0, 96.0, status=frozenset({BloodPressureStatus.IMPROPER_POSITION})),
        glucose(patient_id, later, 180.0, sequence_number=40, context=GlucoseContext(meal=Meal.POSTPRANDIAL)),
        bp(patient_id, DST_CHANGE + timedelta(hours=3), 120.0, 70.0),
    ]


def _whole(store: ReadingStore, patient_id: str, start: datetime, end: datetime) -> list[AnyReading]:
    got = [
        *store.query_range(patient_id, ReadingKind.BLOOD_PRESSURE, start, end),
        *store.query_range(patient_id, ReadingKind.GLUCOSE, start, end),
    ]
    return sorted(got, key=lambda r: (r.measured_at, r.reading_id))


def test_observations_from_columns_equal_those_from_whole_readings(reading_store: ReadingStore) -> None:
    """Irregular pulse, cuff flags, invalid readings, a CGM value and meals reach the rules unchanged."""
    reading_store.write_batch([*_readings("p-1"), *_others("p-2")])
    start, end = T0 - timedelta(days=1), DST_CHANGE + timedelta(days=1)
    columns = reading_store.history_columns(["p-1", "p-2", "p-none"], start, end)
    got = observations(columns)
    assert set(got) == {"p-1", "p-2"}  # a patient without readings has none
    for patient_id in ("p-1", "p-2"):
        expected = [observation_from_reading(r) for r in _whole(reading_store, patient_id, start, end)]
        assert got[patient_id] == expected
    assert columns.patient_id == ["p-1"] * len(got["p-1"]) + ["p-2"] * 3  # grouped in the order asked


def test_history_read_keeps_to_its_window(reading_store: ReadingStore) -> None:
    """The window is half-open on the exact measurement time, as every range read of the store."""
    readings = _readings("p-1")
    reading_store.write_batch(readings)
    edge = readings[4].measured_at  # carries microseconds
    columns = reading_store.history_columns(["p-1"], edge, DST_CHANGE + timedelta(minutes=10))
    times = [datetime.fromtimestamp(us / 1e6, UTC) for us in columns.measured_at_us]
    assert min(times) == edge
    assert max(times) < DST_CHANGE + timedelta(minutes=10)
    assert len(columns) == sum(edge <= r.measured_at < DST_CHANGE + timedelta(minutes=10) for r in readings)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Shanghai", "America/St_Johns"])
def test_sweep_columns_equal_those_built_reading_by_reading(reading_store: ReadingStore, zone: str) -> None:
    """Local days and hours, across a daylight-saving change, kinds, exclusions and meals agree."""
    reading_store.write_batch([*_readings("p-1"), *_others("p-2")])
    start, end = T0 - timedelta(days=1), DST_CHANGE + timedelta(days=1)
    ids, zones = ["p-1", "p-2"], [zone, "UTC"]
    day0 = date(2026, 3, 8)
    brief = reading_store.history_columns(ids, start, end, details=False)  # as the sweep reads
    assert brief.reading_id == brief.left_out == []
    fast, fast_starts = sweep_columns(brief, ids, day0, zones)
    whole = [observation_from_reading(r) for pid in ids for r in _whole(reading_store, pid, start, end)]
    slow, slow_starts = columns_from_observations(whole, ids, day0, zones)
    for name in ("patient", "day", "kind", "excluded_from_averages", "meal"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    for name in (
        "local_hour",
        "local_seconds",
        "utc_seconds",
        "systolic_mmhg",
        "diastolic_mmhg",
        "glucose_mg_dl",
    ):
        assert np.allclose(getattr(fast, name), getattr(slow, name), equal_nan=True, rtol=0, atol=1e-6), name
    assert np.array_equal(fast_starts, slow_starts)


def test_utc_offsets_follow_a_zone_through_its_transitions() -> None:
    """Every instant of a year, sampled every 7 minutes, gets the offset zoneinfo gives it."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/St_Johns")  # UTC-3:30, changing at 02:00 local time
    first = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    instants = np.arange(first, first + 366 * 86_400, 7 * 60, dtype=np.float64)
    expected = np.array([datetime.fromtimestamp(t, zone).utcoffset().total_seconds() for t in instants])  # type: ignore[union-attr]
    assert np.array_equal(utc_offsets_s(zone, instants), expected)
