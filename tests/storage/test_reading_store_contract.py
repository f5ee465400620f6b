"""The reading store contract, run against every store (SQLite and a real influxd)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage.readings import MetricSummary, ReadingStore
from tests.storage.readings_data import T0, bp, every_field_readings, glucose
from vitals.readings import BloodPressureReading, BloodPressureStatus, GlucoseReading, ReadingKind


def _window() -> tuple[datetime, datetime]:
    return T0 - timedelta(days=1), T0 + timedelta(days=1)


def test_round_trip_keeps_every_field(reading_store: ReadingStore) -> None:
    readings = every_field_readings("p-1")
    result = reading_store.write_batch(readings)
    assert result.stored == tuple(r.reading_id for r in readings)
    assert result.duplicates == ()

    start, end = _window()
    got = [
        *reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, start, end),
        *reading_store.query_range("p-1", ReadingKind.GLUCOSE, start, end),
    ]
    by_id = {r.reading_id: r for r in got}
    assert len(got) == len(readings)
    for reading in readings:
        assert by_id[reading.reading_id] == reading  # every field: natives, canonicals, times, raw
    invalid = {r.reading_id for r in got if not r.valid}
    assert len(invalid) == 3  # diastolic above systolic, control solution, sensor malfunction
    kpa = next(r for r in got if isinstance(r, BloodPressureReading) and r.unit == "kPa")
    assert kpa.systolic == 18.7
    assert kpa.systolic_mmhg == pytest.approx(140.26, abs=0.01)
    mmol = next(r for r in got if isinstance(r, GlucoseReading) and r.unit == "mmol/L")
    assert mmol.glucose == 7.2
    assert mmol.glucose_mg_dl == pytest.approx(7.2 * 18.01559)


def test_rewriting_a_batch_stores_it_once_and_reports_duplicates(reading_store: ReadingStore) -> None:
    readings = every_field_readings("p-1")
    first = reading_store.write_batch(readings)
    second = reading_store.write_batch(readings)
    assert len(first.stored) == len(readings)
    assert second.stored == ()
    assert second.duplicates == tuple(r.reading_id for r in readings)

    start, end = _window()
    assert len(reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, start, end)) == 5
    assert len(reading_store.query_range("p-1", ReadingKind.GLUCOSE, start, end)) == 4


def test_a_batch_mixing_new_old_and_repeated_readings_counts_each_once(reading_store: ReadingStore) -> None:
    old = bp("p-1", T0, 120.0, 80.0)
    new = bp("p-1", T0 + timedelta(minutes=5), 122.0, 81.0)
    reading_store.write_batch([old])
    result = reading_store.write_batch([old, new, new])
    assert result.stored == (new.reading_id,)
    assert result.duplicates == (old.reading_id, new.reading_id)
    start, end = _window()
    assert [
        r.reading_id for r in reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, start, end)
    ] == [
        old.reading_id,
        new.reading_id,
    ]


def test_two_readings_in_the_same_second_are_both_kept(reading_store: ReadingStore) -> None:
    # Same patient, same kind, same second, different meters' records: neither overwrites the other.
    a = glucose("p-1", T0, 100.0, sequence_number=10)
    b = glucose("p-1", T0, 180.0, sequence_number=11)
    assert reading_store.write_batch([a, b]).stored == (a.reading_id, b.reading_id)
    got = reading_store.query_range("p-1", ReadingKind.GLUCOSE, T0, T0 + timedelta(seconds=1))
    assert sorted(r.glucose_mg_dl or 0 for r in got if isinstance(r, GlucoseReading)) == [100.0, 180.0]


def test_range_is_half_open_per_patient_and_kind_and_ordered(reading_store: ReadingStore) -> None:
    times = [T0 + timedelta(minutes=10 * i) for i in range(6)]
    mine = [bp("p-1", t, 120.0 + i, 80.0) for i, t in enumerate(times)]
    others = [bp("p-2", t, 140.0, 90.0, user_id=2) for t in times]
    glucose_too = [glucose("p-1", t, 100.0, sequence_number=i) for i, t in enumerate(times)]
    reading_store.write_batch([*reversed(mine), *others, *glucose_too])

    got = reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, times[1], times[4])
    assert [r.reading_id for r in got] == [r.reading_id for r in mine[1:4]]  # start in, end out
    assert all(r.patient_id == "p-1" and r.kind is ReadingKind.BLOOD_PRESSURE for r in got)
    limited = reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, times[0], times[5], limit=2)
    assert [r.reading_id for r in limited] == [r.reading_id for r in mine[:2]]
    assert reading_store.query_range("p-3", ReadingKind.BLOOD_PRESSURE, times[0], times[5]) == []


def test_range_boundaries_respect_microseconds(reading_store: ReadingStore) -> None:
    at = T0 + timedelta(microseconds=500_000)
    reading = bp("p-1", at, 120.0, 80.0)
    reading_store.write_batch([reading])
    assert (
        reading_store.query_range(
            "p-1", ReadingKind.BLOOD_PRESSURE, at + timedelta(microseconds=1), T0 + timedelta(seconds=1)
        )
        == []
    )
    assert reading_store.query_range("p-1", ReadingKind.BLOOD_PRESSURE, T0, at) == []
    assert reading_store.query_range(
        "p-1", ReadingKind.BLOOD_PRESSURE, at, at + timedelta(microseconds=1)
    ) == [reading]


def test_latest_per_patient_and_kind(reading_store: ReadingStore) -> None:
    assert reading_store.latest("p-1") is None
    early_bp = bp("p-1", T0, 120.0, 80.0)
    late_invalid_bp = bp("p-1", T0 + timedelta(hours=2), 80.0, 90.0)
    mid_glucose = glucose("p-1", T0 + timedelta(hours=1), 110.0, sequence_number=1)
    other_patient = bp("p-2", T0 + timedelta(hours=5), 130.0, 85.0)
    reading_store.write_batch([late_invalid_bp, mid_glucose, early_bp, other_patient])

    assert reading_store.latest("p-1") == late_invalid_bp
    assert reading_store.latest("p-1", ReadingKind.BLOOD_PRESSURE) == late_invalid_bp
    assert reading_store.latest("p-1", ReadingKind.BLOOD_PRESSURE, valid_only=True) == early_bp
    assert reading_store.latest("p-1", ReadingKind.GLUCOSE) == mid_glucose
    assert reading_store.latest("p-1", valid_only=True) == mid_glucose
    assert reading_store.latest("p-2") == other_patient


def test_daily_aggregates_blood_pressure_exclude_invalid_and_flagged(reading_store: ReadingStore) -> None:
    day1 = datetime(2026, 3, 10, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    reading_store.write_batch(
        [
            bp("p-1", day1 + timedelta(hours=7), 120.0, 80.0, pulse_bpm=60.0),
            bp("p-1", day1 + timedelta(hours=8), 130.0, 84.0, pulse_bpm=None),
            bp("p-1", day1 + timedelta(hours=19), 140.0, 86.0, pulse_bpm=70.0),
            bp("p-1", day1 + timedelta(hours=20), 90.0, 95.0),  # invalid
            bp(  # flagged: body movement
                "p-1",
                day1 + timedelta(hours=21),
                200.0,
                120.0,
                status=frozenset({BloodPressureStatus.BODY_MOVEMENT}),
            ),
            bp(  # irregular pulse stays in averages
                "p-1",
                day2 + timedelta(hours=6),
                150.0,
                90.0,
                pulse_bpm=80.0,
                status=frozenset({BloodPressureStatus.IRREGULAR_PULSE}),
            ),
            bp("p-2", day1 + timedelta(hours=9), 180.0, 110.0, user_id=2),  # another patient
            glucose("p-1", day1 + timedelta(hours=9), 300.0, sequence_number=1),  # another kind
        ]
    )
    aggregates = reading_store.daily_aggregates(
        "p-1", ReadingKind.BLOOD_PRESSURE, date(2026, 3, 9), date(2026, 3, 12)
    )
    assert [a.day for a in aggregates] == [date(2026, 3, 10), date(2026, 3, 11)]
    first, second = aggregates
    assert (first.count, first.excluded_count) == (3, 2)
    assert first.systolic_mmhg == MetricSummary(count=3, mean=130.0, min=120.0, max=140.0)
    assert first.diastolic_mmhg == MetricSummary(count=3, mean=250.0 / 3, min=80.0, max=86.0)
    assert first.pulse_bpm == MetricSummary(count=2, mean=65.0, min=60.0, max=70.0)
    assert first.glucose_mg_dl is None
    assert (second.count, second.excluded_count) == (1, 0)
    assert second.systolic_mmhg == MetricSummary(count=1, mean=150.0, min=150.0, max=150.0)


def test_daily_aggregates_glucose_in_a_local_timezone(reading_store: ReadingStore) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in March before the switch on 29 March
    reading_store.write_batch(
        [
            glucose("p-1", datetime(2026, 3, 10, 6, 0, tzinfo=UTC), 90.0, sequence_number=1),
            # 23:30 UTC is 00:30 on 11 March in Berlin
            glucose("p-1", datetime(2026, 3, 10, 23, 30, tzinfo=UTC), 150.0, sequence_number=2),
            glucose("p-1", datetime(2026, 3, 11, 12, 0, tzinfo=UTC), 5.0, sequence_number=3),  # implausible
            glucose("p-1", datetime(2026, 3, 11, 12, 5, tzinfo=UTC), 110.0, sequence_number=4),
        ]
    )
    utc_days = reading_store.daily_aggregates(
        "p-1", ReadingKind.GLUCOSE, date(2026, 3, 10), date(2026, 3, 11)
    )
    assert [(a.day, a.count, a.excluded_count) for a in utc_days] == [
        (date(2026, 3, 10), 2, 0),
        (date(2026, 3, 11), 1, 1),
    ]
    assert utc_days[0].glucose_mg_dl == MetricSummary(count=2, mean=120.0, min=90.0, max=150.0)

    local_days = reading_store.daily_aggregates(
        "p-1", ReadingKind.GLUCOSE, date(2026, 3, 10), date(2026, 3, 11), tz=berlin
    )
    assert [(a.day, a.count, a.excluded_count) for a in local_days] == [
        (date(2026, 3, 10), 1, 0),
        (date(2026, 3, 11), 2, 1),
    ]
    assert local_days[1].glucose_mg_dl == MetricSummary(count=2, mean=130.0, min=110.0, max=150.0)
    assert local_days[1].systolic_mmhg is None
    # Only the days asked for: 11 March alone.
    only = reading_store.daily_aggregates(
        "p-1", ReadingKind.GLUCOSE, date(2026, 3, 11), date(2026, 3, 11), tz=berlin
    )
    assert [a.day for a in only] == [date(2026, 3, 11)]


def test_queries_refuse_naive_times_and_malformed_patient_ids(reading_store: ReadingStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        reading_store.query_range("p-1", ReadingKind.GLUCOSE, datetime(2026, 1, 1), T0)
    with pytest.raises(ValueError, match="opaque id"):
        reading_store.latest("p-1' OR 1=1 --")


def test_unbound_readings_are_idempotent_too(reading_store: ReadingStore) -> None:
    unbound = [glucose(None, T0 + timedelta(minutes=i), 100.0, sequence_number=i) for i in range(3)]
    assert len(reading_store.write_batch(unbound).stored) == 3
    assert reading_store.write_batch(unbound).duplicates == tuple(r.reading_id for r in unbound)


def test_daily_aggregates_on_a_daylight_saving_day(reading_store: ReadingStore) -> None:
    # Berlin switched to summer time on 29 March 2026: that local day lasted 23 hours,
    # from 28 March 23:00 UTC to 29 March 22:00 UTC.
    berlin = ZoneInfo("Europe/Berlin")
    at = [
        datetime(2026, 3, 28, 22, 30, tzinfo=UTC),  # 23:30 on 28 March (CET)
        datetime(2026, 3, 28, 23, 30, tzinfo=UTC),  # 00:30 on 29 March (CET)
        datetime(2026, 3, 29, 21, 30, tzinfo=UTC),  # 23:30 on 29 March (CEST)
        datetime(2026, 3, 29, 22, 30, tzinfo=UTC),  # 00:30 on 30 March (CEST)
    ]
    reading_store.write_batch([bp("p-1", t, 120.0 + 10 * i, 80.0, pulse_bpm=70.0) for i, t in enumerate(at)])
    (day,) = reading_store.daily_aggregates(
        "p-1", ReadingKind.BLOOD_PRESSURE, date(2026, 3, 29), date(2026, 3, 29), tz=berlin
    )
    assert day.day == date(2026, 3, 29)
    assert day.count == 2
    assert day.systolic_mmhg == MetricSummary(count=2, mean=135.0, min=130.0, max=140.0)
    days = reading_store.daily_aggregates(
        "p-1", ReadingKind.BLOOD_PRESSURE, date(2026, 3, 28), date(2026, 3, 30), tz=berlin
    )
    assert [(d.day, d.count) for d in days] == [
        (date(2026, 3, 28), 1),
        (date(2026, 3, 29), 2),
        (date(2026, 3, 30), 1),
    ]


def test_latest_for_a_panel_of_patients(reading_store: ReadingStore) -> None:
    readings = {
        f"p-{n}": [
            bp(f"p-{n}", T0 + timedelta(minutes=10 * i + n), 120.0 + i, 80.0, user_id=n) for i in range(3)
        ]
        for n in range(5)
    }
    reading_store.write_batch([r for rs in readings.values() for r in rs])
    reading_store.write_batch([glucose("p-0", T0 + timedelta(hours=5), 99.0, sequence_number=1)])
    panel = reading_store.latest_by_patient(
        ["p-0", "p-1", "p-2", "p-3", "p-4", "p-none"], ReadingKind.BLOOD_PRESSURE
    )
    assert panel == {patient: rs[-1] for patient, rs in readings.items()}
    assert reading_store.latest_by_patient(["p-0"])["p-0"].kind is ReadingKind.GLUCOSE
    assert reading_store.latest_by_patient([]) == {}


def test_reading_columns_match_the_readings_and_hand_over_the_left_out_ones_whole(
    reading_store: ReadingStore,
) -> None:
    """A summary sees the same readings as the chart: every value in order, error readings whole."""
    readings = every_field_readings("p-1")
    reading_store.write_batch(readings)
    start, end = _window()
    for kind in (ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE):
        expected = reading_store.query_range("p-1", kind, start, end)
        columns = reading_store.reading_columns("p-1", kind, start, end)
        assert len(columns) == len(expected)
        assert columns.measured_at_us == [
            int(r.measured_at.timestamp()) * 1_000_000 + r.measured_at.microsecond for r in expected
        ]
        assert columns.in_averages == [
            not r.excluded_from_averages if isinstance(r, BloodPressureReading) else r.valid for r in expected
        ]
        assert columns.left_out == [
            None if ok else r for r, ok in zip(expected, columns.in_averages, strict=True)
        ]
        if kind is ReadingKind.BLOOD_PRESSURE:
            bps = [r for r in expected if isinstance(r, BloodPressureReading)]
            assert columns.systolic_mmhg == pytest.approx([r.systolic_mmhg for r in bps])
            assert columns.diastolic_mmhg == pytest.approx([r.diastolic_mmhg for r in bps])
            assert columns.pulse_bpm == [r.pulse_bpm for r in bps]
            assert columns.glucose_mg_dl == [] and columns.meal == []
        else:
            gs = [r for r in expected if isinstance(r, GlucoseReading)]
            assert columns.glucose_mg_dl == pytest.approx([r.glucose_mg_dl for r in gs])
            assert columns.meal == [
                r.context.meal.value if r.context and r.context.meal else None for r in gs
            ]
            assert columns.systolic_mmhg == []
    # Left out: the body-movement reading (valid, flagged) and diastolic >= systolic (invalid).
    flagged = reading_store.reading_columns("p-1", ReadingKind.BLOOD_PRESSURE, start, end).left_out
    assert sum(r is not None for r in flagged) == 2


def test_reading_columns_are_half_open_per_patient(reading_store: ReadingStore) -> None:
    """The column query keeps the range's bounds and patient, like the range query."""
    at = T0 + timedelta(microseconds=500_000)
    mine = bp("p-1", at, 120.0, 80.0)
    reading_store.write_batch([mine, bp("p-2", at, 150.0, 90.0, user_id=2)])
    kind, us = ReadingKind.BLOOD_PRESSURE, timedelta(microseconds=1)
    assert len(reading_store.reading_columns("p-1", kind, at + us, T0 + timedelta(1))) == 0
    assert len(reading_store.reading_columns("p-1", kind, T0, at)) == 0
    assert reading_store.reading_columns("p-1", kind, at, at + us).systolic_mmhg == [120.0]
    assert len(reading_store.reading_columns("p-3", kind, T0, T0 + timedelta(1))) == 0
